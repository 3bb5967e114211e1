# Stage 'reminder' (issue 4): <reminder> self-reflection.
#   generate_reminder_data  teacher responses for training dialogues  -> results/reminder/teacher/
#   finetune_vlm            LoRA adapter on the Gemma-3 VLM            -> results/reminder/finetuned/adapter/
#   predict_reminder        one variant on the last round of each val dialogue -> results/reminder/<variant>/
#   evaluate_reminder       ROUGE/BLEU/BERTScore/ranking per variant   -> results/reminder/<variant>/metrics.json
#   reminder_table          the variants' table and figure             -> results/reminder/metrics.json


if stage_active("reminder"):
    from mmemory.reminder.stage import variant_inputs

    RCFG = config["reminder"]
    # finetuned_memory reads the memory stage's retrieved context, so it runs only when that stage does.
    REMINDER_VARIANTS = [
        v for v in RCFG["variants"] if v != "finetuned_memory" or stage_active("memory")
    ]
    REMINDER_PROMPTS = {
        "instruction": RCFG["prompts"]["instruction"],
        **({"fewshot": RCFG["prompts"]["fewshot"]} if RCFG["prompts"].get("fewshot") else {}),
    }

    rule generate_reminder_data:
        input:
            train="results/data/train.json",
            **REMINDER_PROMPTS,
        output:
            data="results/reminder/teacher/train.jsonl",
            rejects="results/reminder/teacher/rejects.jsonl",
            metrics="results/reminder/teacher/metrics.json",
        params:
            teacher=RCFG["teacher"],
            prompts=RCFG["prompts"],
            include_caption=RCFG.get("include_caption", False),
            seed=config["seed"],
            progress="results/reminder/teacher/progress",
        log:
            "results/logs/reminder/generate_reminder_data.log",
        benchmark:
            "results/benchmarks/reminder/generate_reminder_data.tsv"
        threads: 1
        conda:
            "../envs/core.yaml"
        script:
            "../workflow_scripts/generate_reminder_data.py"

    rule finetune_vlm:
        input:
            data="results/reminder/teacher/train.jsonl",
            train="results/data/train.json",
            vlm=model_input("vlm"),
            **REMINDER_PROMPTS,
        output:
            adapter=directory("results/reminder/finetuned/adapter"),
            metrics="results/reminder/finetuned/train_metrics.json",
        params:
            model=lambda w, input: input.vlm[0] if input.vlm else model_path("vlm"),
            finetune=RCFG["finetune"],
            prompts=RCFG["prompts"],
            include_caption=RCFG.get("include_caption", False),
            memory_top_k=RCFG["memory_top_k"],
            seed=config["seed"],
            checkpoints="results/reminder/finetuned/checkpoints",
        log:
            "results/logs/reminder/finetune_vlm.log",
        benchmark:
            "results/benchmarks/reminder/finetune_vlm.tsv"
        threads: 2
        resources:
            gpu=1 if RCFG["finetune"]["backend"] == "unsloth" else 0,
        conda:
            "../envs/unsloth.yaml"
        script:
            "../workflow_scripts/finetune_vlm.py"

    rule predict_reminder:
        input:
            unpack(lambda w: variant_inputs(w.variant)),
            val="results/data/val.json",
            vlm=model_input("vlm"),
            **REMINDER_PROMPTS,
        output:
            predictions="results/reminder/{variant}/predictions.json",
            generations="results/reminder/{variant}/generations.jsonl",
            metrics="results/reminder/{variant}/predict_metrics.json",
        wildcard_constraints:
            variant="base|prompt|finetuned|finetuned_memory",
        params:
            model=lambda w, input: input.vlm[0] if input.vlm else model_path("vlm"),
            prompts=RCFG["prompts"],
            generation=RCFG["generation"],
            include_caption=RCFG.get("include_caption", False),
            memory_top_k=RCFG.get("memory_top_k"),
            progress="results/reminder/{variant}/progress",
        log:
            "results/logs/reminder/predict_reminder_{variant}.log",
        benchmark:
            "results/benchmarks/reminder/predict_reminder_{variant}.tsv"
        threads: 2
        conda:
            "../envs/unsloth.yaml"
        script:
            "../workflow_scripts/predict_reminder.py"

    rule evaluate_reminder:
        input:
            predictions="results/reminder/{variant}/predictions.json",
            val="results/data/val.json",
            dense="results/data/val_dense.json",
        output:
            metrics="results/reminder/{variant}/metrics.json",
        wildcard_constraints:
            variant="base|prompt|finetuned|finetuned_memory",
        params:
            evaluation=RCFG["evaluation"],
        log:
            "results/logs/reminder/evaluate_reminder_{variant}.log",
        threads: 2
        conda:
            "../envs/core.yaml"
        script:
            "../workflow_scripts/evaluate_reminder.py"

    rule reminder_table:
        input:
            variants=expand("results/reminder/{variant}/metrics.json", variant=REMINDER_VARIANTS),
            teacher="results/reminder/teacher/metrics.json",
            finetune=(
                ["results/reminder/finetuned/train_metrics.json"]
                if any(v.startswith("finetuned") for v in REMINDER_VARIANTS)
                else []
            ),
        output:
            metrics="results/reminder/metrics.json",
            figure=report(
                "results/reminder/variants.png",
                caption="../resources/report/reminder_variants.rst",
                category="Reminder",
            ),
        params:
            variants=REMINDER_VARIANTS,
        log:
            "results/logs/reminder/reminder_table.log",
        conda:
            "../envs/core.yaml"
        script:
            "../workflow_scripts/reminder_table.py"

    REPORT_METRICS["`<reminder>` self-reflection"] = "results/reminder/metrics.json"
    REPORT_FIGURES["results/reminder/variants.png"] = (
        "`<reminder>` variants on the last round of each val dialogue: ROUGE-1/2/L, BLEU, BERTScore F1"
    )
