# Stage 'emr': Extraction-Memorization.
#   train_toy_clip      contrastive training of the tiny CLIP (toy only)      -> results/emr/toy_clip/
#   pretrain_toy_llm    LM pre-training of the tiny Llama on train text (toy) -> results/emr/toy_llm/
#   extract_embeddings  image + per-round question embeddings, sharded      -> results/emr/embeddings/{split}/
#   train_emr           the MA-LMM bridge for one variant and training seed  -> results/emr/{variant}/s{seed}/bridge.*
#   eval_emr            BLEU-4 (nltk) + sacreBLEU / ROUGE-L (beam search) + likelihood ranking   -> results/emr/{variant}/s{seed}/eval_{split}.json
#   emr_metrics         the variants' table on test (mean and spread over train_seeds), loss curves -> results/emr/metrics.json
# train_emr fits on train and tracks its loss on val; the table is on test. eval_{val}.json is there for choosing
# settings (`snakemake results/emr/after/s0/eval_val.json`) and is not in the report.
# Shards (results/emr/embeddings/{split}/shard-*.safetensors), training checkpoints (s{seed}/ckpt/) and partial
# evaluations (s{seed}/work_{split}/) are not declared outputs, so that a rerun after a kill resumes from them.


if stage_active("emr"):
    EMR = config["emr"]
    EMR_TRAINED = ["after", "no_turn_pe", "no_memory_bank"]
    EMR_VARIANTS = EMR["variants"]

    # The toy CLIP / toy LM are trained by the workflow when models.clip / models.llm are the build_toy_models ones.
    EMR_TOY_CLIP = EMR["encoder"]["kind"] == "clip" and bool(model_input("clip")) and not EMR["encoder"]["checkpoint"]
    EMR_TOY_LLM = bool(model_input("llm"))
    EMR_ENCODER_INPUT = ["results/emr/toy_clip"] if EMR_TOY_CLIP else []
    EMR_ENCODER_PATH = EMR["encoder"]["checkpoint"] or (model_path("clip") if EMR["encoder"]["kind"] == "clip" else None)
    EMR_LLM_INPUT = ["results/emr/toy_llm"] if EMR_TOY_LLM else []
    EMR_TOY_METRICS = (["results/emr/toy_models/clip_metrics.json"] if EMR_TOY_CLIP else []) + (
        ["results/emr/toy_models/llm_metrics.json"] if EMR_TOY_LLM else []
    )

    if EMR_TOY_CLIP:

        rule train_toy_clip:
            input:
                clip=model_path("clip"),
                train="results/data/train.json",
                val="results/data/val.json",
            output:
                model=directory("results/emr/toy_clip"),
                metrics="results/emr/toy_models/clip_metrics.json",
            params:
                settings=EMR["toy_clip"],
                seed=config["seed"],
            log:
                "results/logs/emr/train_toy_clip.log",
            benchmark:
                "results/benchmarks/emr/train_toy_clip.tsv"
            threads: 1
            resources:
                **gpu_job(8000, 60),  # a toy stand-in: minutes on one CPU core
            conda:
                "../envs/malmm.yaml"
            script:
                "../workflow_scripts/emr_train_toy_clip.py"

    if EMR_TOY_LLM:

        rule pretrain_toy_llm:
            input:
                llm=model_path("llm"),
                train="results/data/train.json",
                val="results/data/val.json",
            output:
                model=directory("results/emr/toy_llm"),
                metrics="results/emr/toy_models/llm_metrics.json",
            params:
                settings=EMR["toy_llm"],
                emr=settings("emr", "prompt_template"),
                seed=config["seed"],
            log:
                "results/logs/emr/pretrain_toy_llm.log",
            benchmark:
                "results/benchmarks/emr/pretrain_toy_llm.tsv"
            threads: 1
            resources:
                **gpu_job(8000, 60),  # a toy stand-in: minutes on one CPU core
            conda:
                "../envs/malmm.yaml"
            script:
                "../workflow_scripts/emr_pretrain_toy_llm.py"

    rule extract_embeddings:
        input:
            data="results/data/{split}.json",
            encoder=EMR_ENCODER_INPUT,
        output:
            index="results/emr/embeddings/{split}/index.json",
            metrics="results/emr/embeddings/{split}/metrics.json",
        params:
            encoder=EMR["encoder"],
            path=model_param("encoder", EMR_ENCODER_PATH),
            extract=EMR["extract"],
            emr=settings("emr", "device"),
        log:
            "results/logs/emr/extract_embeddings_{split}.log",
        benchmark:
            "results/benchmarks/emr/extract_embeddings_{split}.tsv"
        threads: 1
        priority: 5  # heads train_emr's chain; left for last, the ~1-min training ran alone on one core at the end
        resources:
            **gpu_job(64000, 720),
        conda:
            "../envs/imagebind.yaml" if EMR["encoder"]["kind"] == "imagebind" else "../envs/malmm.yaml"
        script:
            "../workflow_scripts/emr_extract_embeddings.py"

    rule train_emr:
        input:
            train="results/data/train.json",
            val="results/data/val.json",
            train_emb="results/emr/embeddings/train/index.json",
            val_emb="results/emr/embeddings/val/index.json",
            llm=EMR_LLM_INPUT,
        output:
            bridge="results/emr/{variant}/s{seed}/bridge.safetensors",
            config="results/emr/{variant}/s{seed}/bridge_config.json",
            loss_csv="results/emr/{variant}/s{seed}/loss.csv",
            loss_png="results/emr/{variant}/s{seed}/loss.png",
            summary="results/emr/{variant}/s{seed}/train_summary.json",
        wildcard_constraints:
            variant="|".join(EMR_TRAINED),
        params:
            llm=model_param("llm", model_path("llm")),
            bridge=EMR["bridge"],
            train=lambda w: {**EMR["train"], "seed": int(w.seed)},
            emr=settings("emr", "llm_4bit", "llm_dtype", "llm_trainable", "prompt_template", "device"),
        log:
            "results/logs/emr/train_emr_{variant}_s{seed}.log",
        benchmark:
            "results/benchmarks/emr/train_emr_{variant}_s{seed}.tsv"
        threads: EMR["threads"]
        priority: 5  # start it before the short prediction jobs, which fill both cores at the end
        resources:
            **gpu_job(64000, 1440),
        conda:
            "../envs/malmm.yaml"
        script:
            "../workflow_scripts/emr_train.py"

    rule eval_emr:
        input:
            unpack(emr_bridge_input),
            data="results/data/{split}.json",
            dense="results/data/{split}_dense.json",
            emb="results/emr/embeddings/{split}/index.json",
            llm=EMR_LLM_INPUT,
        output:
            metrics="results/emr/{variant}/s{seed}/eval_{split}.json",
        wildcard_constraints:
            variant="|".join(["before"] + EMR_TRAINED),
            split="val|test",
        params:
            llm=model_param("llm", model_path("llm")),
            bridge=EMR["bridge"],
            train=lambda w: {"seed": int(w.seed)},  # only the seed: it rebuilds the "before" bridge
            eval=EMR["eval"],
            emr=settings("emr", "llm_4bit", "llm_dtype", "prompt_template", "device"),
        log:
            "results/logs/emr/eval_emr_{variant}_s{seed}_{split}.log",
        benchmark:
            "results/benchmarks/emr/eval_emr_{variant}_s{seed}_{split}.tsv"
        threads: EMR["threads"]
        resources:
            **gpu_job(48000, 480),
        conda:
            "../envs/malmm.yaml"
        script:
            "../workflow_scripts/emr_eval.py"

    rule emr_metrics:
        input:
            evals=expand("results/emr/{variant}/s{seed}/eval_test.json", variant=EMR_VARIANTS, seed=TRAIN_SEEDS),
            losses=expand("results/emr/{variant}/s{seed}/loss.csv",
                          variant=[v for v in EMR_VARIANTS if v in EMR_TRAINED], seed=TRAIN_SEEDS[:1]),
            summaries=expand("results/emr/{variant}/s{seed}/train_summary.json",
                             variant=[v for v in EMR_VARIANTS if v in EMR_TRAINED], seed=TRAIN_SEEDS),
            extraction=expand("results/emr/embeddings/{split}/metrics.json", split=["train", "val", "test"]),
            toy=EMR_TOY_METRICS,
            train="results/data/train.json",
            test="results/data/test.json",
        output:
            metrics="results/emr/metrics.json",
            curves=report(
                "results/emr/loss_curves.png",
                caption="../resources/report/emr_loss.rst",
                category="EMR",
            ),
        params:
            evals={v: expand("results/emr/{variant}/s{seed}/eval_test.json", variant=v, seed=TRAIN_SEEDS)
                   for v in EMR_VARIANTS},
            bridge=EMR["bridge"],
            emr=settings("emr", "llm_trainable"),
        log:
            "results/logs/emr/emr_metrics.log",
        benchmark:
            "results/benchmarks/emr/emr_metrics.tsv"
        conda:
            "../envs/core.yaml"
        script:
            "../workflow_scripts/emr_metrics.py"

    REPORT_METRICS["Extraction-Memorization (EMR)"] = "results/emr/metrics.json"
    REPORT_FIGURES["results/emr/loss_curves.png"] = (
        "EMR bridge: caption pre-training loss, then the answer cross-entropy on train batches and on a fixed "
        "val subset, per trained variant (first training seed)."
    )
