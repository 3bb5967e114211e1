# Stage 'reminder': <reminder> self-reflection.
#   pretrain_toy_vlm        the tiny Gemma-3 stand-in learns to see and read (toy only) -> results/reminder/toy_vlm/
#   generate_reminder_data  teacher responses for training dialogues  -> results/reminder/teacher/
#   finetune_vlm            LoRA adapter on the Gemma-3 VLM, per training seed -> results/reminder/finetuned/s{seed}/adapter/
#   predict_reminder        one variant on the last round of each dialogue of a split
#                                                                      -> results/reminder/{variant}/s{seed}/{split}/
#   evaluate_reminder       ROUGE/sacreBLEU/BERTScore/answer-similarity ranking -> results/reminder/{variant}/s{seed}/{split}/metrics.json
#   reminder_table          the variants' table on test (mean and spread over train_seeds) -> results/reminder/metrics.json
# Val predictions (`snakemake results/reminder/finetuned/s0/val/metrics.json`) are for choosing settings; the report
# shows test. Untrained variants (base, prompt) do not depend on the training seed and run with the first one only.


if stage_active("reminder"):
    RCFG = config["reminder"]
    # The memory variants read the memory stage's retrieved context, so they run only when that stage does.
    REMINDER_VARIANTS = [
        v for v in RCFG["variants"] if v not in MEMORY_VARIANTS or stage_active("memory")
    ]
    # The toy Gemma-3 is pre-trained to see and read before any rule uses it (pretrain_toy_vlm); a real checkpoint
    # (models.vlm outside results/models/) is used as it is.
    REMINDER_TOY_VLM = bool(model_input("vlm"))
    REMINDER_VLM_INPUT = ["results/reminder/toy_vlm"] if REMINDER_TOY_VLM else []

    if REMINDER_TOY_VLM:

        rule pretrain_toy_vlm:
            input:
                vlm=model_path("vlm"),
            output:
                model=directory("results/reminder/toy_vlm"),
                metrics="results/reminder/toy_vlm_metrics.json",
            params:
                settings=RCFG["toy_vlm"],
                toy=config["data"]["toy"],
            log:
                "results/logs/reminder/pretrain_toy_vlm.log",
            benchmark:
                "results/benchmarks/reminder/pretrain_toy_vlm.tsv"
            threads: 1
            priority: 10  # the longest job (about 5 min) heads the longest chain: start it before shorter ones
            conda:
                "../envs/unsloth.yaml"
            script:
                "../workflow_scripts/pretrain_toy_vlm.py"
    REMINDER_TRAINED = [v for v in REMINDER_VARIANTS if v in ADAPTER_VARIANTS]

    REMINDER_PROMPTS = {
        "instruction": RCFG["prompts"]["instruction"],
        **({"fewshot": RCFG["prompts"]["fewshot"]} if RCFG["prompts"]["fewshot"] else {}),
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
            reminder=settings("reminder", "include_caption"),
            seed=config["seed"],
            progress="results/reminder/teacher/progress",
        log:
            "results/logs/reminder/generate_reminder_data.log",
        benchmark:
            "results/benchmarks/reminder/generate_reminder_data.tsv"
        threads: 1
        priority: 10  # a second's work that finetune_vlm waits for: never leave it behind longer jobs
        resources:
            **gpu_job(64000, 1440),  # the transformers teacher runs here; ollama serves elsewhere
        conda:
            "../envs/core.yaml"
        script:
            "../workflow_scripts/generate_reminder_data.py"

    rule finetune_vlm:
        input:
            data="results/reminder/teacher/train.jsonl",
            train="results/data/train.json",
            vlm=REMINDER_VLM_INPUT,
            **REMINDER_PROMPTS,
        output:
            adapter=directory("results/reminder/finetuned/s{seed}/adapter"),
            metrics="results/reminder/finetuned/s{seed}/train_metrics.json",
        params:
            model=model_param("vlm", model_path("vlm")),
            finetune=RCFG["finetune"],
            prompts=RCFG["prompts"],
            reminder=settings("reminder", "include_caption", "memory_top_k"),
            seed=lambda w: int(w.seed),
            checkpoints="results/reminder/finetuned/s{seed}/checkpoints",
        log:
            "results/logs/reminder/finetune_vlm_s{seed}.log",
        benchmark:
            "results/benchmarks/reminder/finetune_vlm_s{seed}.tsv"
        threads: 1  # on the embedded default one thread writes the same adapter bytes as two (85 s vs 74 s alone): it runs beside another job
        priority: 10  # on the longest chain (pretrain_toy_vlm -> finetune_vlm -> 7 variants)
        resources:
            **gpu_job(96000, 1440),
        conda:
            "../envs/unsloth.yaml"
        script:
            "../workflow_scripts/finetune_vlm.py"

    rule predict_reminder:
        input:
            unpack(reminder_variant_inputs),
            data="results/data/{split}.json",
            vlm=REMINDER_VLM_INPUT,
            **REMINDER_PROMPTS,
        output:
            predictions="results/reminder/{variant}/s{seed}/{split}/predictions.json",
            generations="results/reminder/{variant}/s{seed}/{split}/generations.jsonl",
            metrics="results/reminder/{variant}/s{seed}/{split}/predict_metrics.json",
        wildcard_constraints:
            variant="|".join(ALL_REMINDER_VARIANTS),
            split="val|test",
        params:
            model=model_param("vlm", model_path("vlm")),
            prompts=RCFG["prompts"],
            generation=RCFG["generation"],
            reminder=settings("reminder", "include_caption", "memory_top_k"),
            progress="results/reminder/{variant}/s{seed}/{split}/progress",
        log:
            "results/logs/reminder/predict_reminder_{variant}_s{seed}_{split}.log",
        benchmark:
            "results/benchmarks/reminder/predict_reminder_{variant}_s{seed}_{split}.tsv"
        threads: 1  # startup-bound on the embedded default: two such jobs side by side beat one on 2 threads (same outputs)
        resources:
            **gpu_job(48000, 720),
        conda:
            "../envs/unsloth.yaml"
        script:
            "../workflow_scripts/predict_reminder.py"

    rule evaluate_reminder:
        input:
            predictions="results/reminder/{variant}/s{seed}/{split}/predictions.json",
            data="results/data/{split}.json",
            dense="results/data/{split}_dense.json",
        output:
            metrics="results/reminder/{variant}/s{seed}/{split}/metrics.json",
        wildcard_constraints:
            variant="|".join(ALL_REMINDER_VARIANTS),
            split="val|test",
        params:
            evaluation=RCFG["evaluation"],
        log:
            "results/logs/reminder/evaluate_reminder_{variant}_s{seed}_{split}.log",
        benchmark:
            "results/benchmarks/reminder/evaluate_reminder_{variant}_s{seed}_{split}.tsv",
        threads: 1  # startup-bound on the embedded default: two such jobs side by side beat one on 2 threads (same outputs)
        resources:
            **gpu_job(32000, 120),  # BERTScore with roberta-large at paper scale
        conda:
            "../envs/core.yaml"
        script:
            "../workflow_scripts/evaluate_reminder.py"

    rule reminder_table:
        input:
            variants=[p for paths in reminder_runs(REMINDER_VARIANTS, REMINDER_TRAINED).values() for p in paths],
            teacher="results/reminder/teacher/metrics.json",
            finetune=expand("results/reminder/finetuned/s{seed}/train_metrics.json",
                            seed=TRAIN_SEEDS if REMINDER_TRAINED else []),
            train="results/data/train.json",
            test="results/data/test.json",
            context=["results/memory/reminder_context_test.json"] if stage_active("memory") else [],
            toy_vlm=["results/reminder/toy_vlm_metrics.json"] if REMINDER_TOY_VLM else [],
        output:
            metrics="results/reminder/metrics.json",
            figure=report(
                "results/reminder/variants.png",
                caption="../resources/report/reminder_variants.rst",
                category="Reminder",
            ),
        params:
            runs=reminder_runs(REMINDER_VARIANTS, REMINDER_TRAINED),
            reminder=settings("reminder", "memory_top_k"),
        log:
            "results/logs/reminder/reminder_table.log",
        benchmark:
            "results/benchmarks/reminder/reminder_table.tsv"
        conda:
            "../envs/core.yaml"
        script:
            "../workflow_scripts/reminder_table.py"

    REPORT_METRICS["`<reminder>` self-reflection"] = "results/reminder/metrics.json"
    REPORT_FIGURES["results/reminder/variants.png"] = (
        "`<reminder>` variants on the last round of each test dialogue: ROUGE-1/2/L, sacreBLEU, BERTScore F1, exact match "
        "(trained variants: mean over train_seeds, error bars their spread)"
    )
