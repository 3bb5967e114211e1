# Stage 'counting': "how many people are in this image?" with a LLaVA VLM, QLoRA through TRL.
#   counting_data             toy CCTV frames (embedded default; written to results/counting/toy/ in the Mall layout),
#                             the Mall layout or COCO person counts -> results/counting/data/{train,val,test}.json
#   build_counting_toy_model  the tiny LLaVA (CLIP vision tower + Llama) with its processor -> results/models/tiny_llava/
#   finetune_counting         LoRA (4-bit at paper scale) with TRL's SFTTrainer, per training seed, TensorBoard logs
#                                                             -> results/counting/finetuned/s<seed>/adapter/
#   predict_counting          greedy answers before / after fine-tuning -> results/counting/<variant>/s<seed>/<split>/
#   counting_table            counts parsed; exact / ±1 / ±2, MAE, RMSE, P/R/F1; baselines (a palette-free classical
#                             counter chosen on val; the oracle head counter on toy frames); positive controls; figures
#                                                             -> results/counting/metrics.json
# Val predictions (`snakemake results/counting/finetuned/s0/val/predictions.json`) are for choosing settings; the
# report shows test. The untuned model ("before") does not depend on the training seed: it runs with the first one.


if stage_active("counting"):
    KCFG = config["counting"]
    COUNTING_SPLITS = expand("results/counting/data/{split}.json", split=("train", "val", "test"))
    COUNTING_TOY_ROOT = "results/counting/toy"


    rule counting_data:
        output:
            splits=COUNTING_SPLITS,
            report="results/counting/data_report.json",
            # the toy frames the splits point at (Mall layout: labels.csv, frames/)
            **({"toy": directory(COUNTING_TOY_ROOT)} if KCFG["data"]["source"] == "toy" else {}),
        params:
            data=KCFG["data"],
            toy_root=lambda w, output: output.get("toy"),
        log:
            "results/logs/counting/counting_data.log",
        benchmark:
            "results/benchmarks/counting/counting_data.tsv"
        conda:
            "../envs/counting.yaml"
        script:
            "../workflow_scripts/counting_data.py"

    rule build_counting_toy_model:
        output:
            model=directory(f"{BUILT_MODELS}tiny_llava"),
            metrics="results/counting/toy_model.json",
        params:
            sizes=KCFG["toy_model"],
            seed=config["seed"],
        log:
            "results/logs/counting/build_counting_toy_model.log",
        benchmark:
            "results/benchmarks/counting/build_counting_toy_model.tsv"
        conda:
            "../envs/counting.yaml"
        script:
            "../workflow_scripts/counting_build_toy_model.py"

    rule finetune_counting:
        input:
            model=built_input(KCFG["model"]),
            train="results/counting/data/train.json",
            val="results/counting/data/val.json",
        output:
            adapter=directory("results/counting/finetuned/s{seed}/adapter"),
            metrics="results/counting/finetuned/s{seed}/train_metrics.json",
            tensorboard=directory("results/counting/finetuned/s{seed}/tensorboard"),
        params:
            model=model_param("model", KCFG["model"]),
            train=lambda w: {**KCFG["train"], "seed": int(w.seed)},
            checkpoints="results/counting/finetuned/s{seed}/checkpoints",
        log:
            "results/logs/counting/finetune_counting_s{seed}.log",
        benchmark:
            "results/benchmarks/counting/finetune_counting_s{seed}.tsv"
        threads: 1
        resources:
            **gpu_job(32000, 720),
        conda:
            "../envs/counting.yaml"
        script:
            "../workflow_scripts/counting_finetune.py"

    rule predict_counting:
        input:
            model=built_input(KCFG["model"]),
            adapter=counting_adapter_input,
            data="results/counting/data/{split}.json",
        output:
            predictions="results/counting/{variant}/s{seed}/{split}/predictions.json",
        wildcard_constraints:
            variant="before|finetuned",
            split="val|test",
        params:
            model=model_param("model", KCFG["model"]),
            generation=KCFG["generation"],
        log:
            "results/logs/counting/predict_counting_{variant}_s{seed}_{split}.log",
        benchmark:
            "results/benchmarks/counting/predict_counting_{variant}_s{seed}_{split}.tsv"
        threads: 1
        resources:
            **gpu_job(24000, 240),
        conda:
            "../envs/counting.yaml"
        script:
            "../workflow_scripts/counting_predict.py"

    rule counting_table:
        input:
            predictions=[p for paths in counting_runs().values() for p in paths],
            train="results/counting/data/train.json",
            val="results/counting/data/val.json",  # chooses the palette-free classical counter's settings
            test="results/counting/data/test.json",
            train_metrics=expand("results/counting/finetuned/s{seed}/train_metrics.json", seed=TRAIN_SEEDS),
            data_report="results/counting/data_report.json",
        output:
            metrics="results/counting/metrics.json",
            scatter=report(
                "results/counting/pred_vs_true.png",
                caption="../resources/report/counting_scatter.rst",
                category="Counting",
            ),
            buckets=report(
                "results/counting/error_by_count.png",
                caption="../resources/report/counting_buckets.rst",
                category="Counting",
            ),
        params:
            runs=counting_runs(),
            classical=KCFG["data"]["source"] == "toy",  # the oracle head counter knows the toy's head colours
            tensorboard=expand("results/counting/finetuned/s{seed}/tensorboard", seed=TRAIN_SEEDS),
        log:
            "results/logs/counting/counting_table.log",
        benchmark:
            "results/benchmarks/counting/counting_table.tsv"
        conda:
            "../envs/core.yaml"
        script:
            "../workflow_scripts/counting_table.py"

    REPORT_METRICS["People counting (counting)"] = "results/counting/metrics.json"
    REPORT_FIGURES["results/counting/pred_vs_true.png"] = (
        "counting: predicted against true count on test, per model (the diagonal is a perfect count)"
    )
    REPORT_FIGURES["results/counting/error_by_count.png"] = (
        "counting: mean absolute error on test by true-count bucket, per model and baseline"
    )
