# Stage 'coref': which object in which shared photo a dialogue's last pronoun means (4 choices).
#   coref_data              toy dialogues or coref.data.path -> results/coref/data/{train,val,test}.json + data_report.json
#   build_coref_toy_models  the tiny Llamas of coref.toy_models (embedded default) -> results/models/coref/<name>/
#   train_coref             one model x training seed, Trainer (DDP under torchrun with resources.nproc processes)
#                                                           -> results/coref/<model>/finetuned/s<seed>/model/
#   eval_coref              generation + option likelihood (+ the choices rotated), before or after fine-tuning
#                                                           -> results/coref/<model>/<variant>/s<seed>/<split>/eval.json
#   coref_table             models x protocols with 95% CIs, chance and shortcut baselines (the logistic regression's C
#                           chosen on val), position bias, per-kind accuracy, positive controls -> results/coref/metrics.json
# Val evaluations (`snakemake results/coref/tiny-m/finetuned/s0/val/eval.json`) are for choosing settings; the report
# shows test. The untrained models ("before") do not depend on the training seed and run with the first one only.


if stage_active("coref"):
    CCFG = config["coref"]
    COREF_TOY = coref_toy_models()
    COREF_SPLITS = expand("results/coref/data/{split}.json", split=("train", "val", "test"))
    COREF_PROCESSES = int(CCFG["processes"])


    rule coref_data:
        output:
            splits=COREF_SPLITS,
            report="results/coref/data_report.json",
        params:
            data=CCFG["data"],
        log:
            "results/logs/coref/coref_data.log",
        benchmark:
            "results/benchmarks/coref/coref_data.tsv"
        conda:
            "../envs/core.yaml"
        script:
            "../workflow_scripts/coref_data.py"

    rule build_coref_toy_models:
        input:
            train="results/coref/data/train.json",
        output:
            models=[directory(p) for p in COREF_TOY.values()],
        params:
            out=COREF_TOY,
            sizes={name: CCFG["toy_models"][name] for name in COREF_TOY},
            seed=config["seed"],
            target=CCFG["train"]["target"],  # the tokenizer learns the answers in the format training uses
        log:
            "results/logs/coref/build_coref_toy_models.log",
        benchmark:
            "results/benchmarks/coref/build_coref_toy_models.tsv"
        priority: 5  # the second-longest chain (copy pre-training, then two ~2.5-min trainings): start it early
        conda:
            "../envs/coref.yaml"
        script:
            "../workflow_scripts/coref_build_toy_models.py"

    rule train_coref:
        input:
            model=coref_base_input,
            train="results/coref/data/train.json",
            val="results/coref/data/val.json",
        output:
            model=directory("results/coref/{model}/finetuned/s{seed}/model"),
            metrics="results/coref/{model}/finetuned/s{seed}/train_metrics.json",
        params:
            base=coref_model_param,
            settings=coref_train_settings,  # coref.train, the model's own overrides, the seed of train_seeds
            checkpoints="results/coref/{model}/finetuned/s{seed}/checkpoints",
            python=PYTHON,
        log:
            "results/logs/coref/train_coref_{model}_s{seed}.log",
        benchmark:
            "results/benchmarks/coref/train_coref_{model}_s{seed}.tsv"
        threads: 1
        priority: 5  # the long jobs go first, so that the DAG does not end with one of them running alone
        resources:
            nproc=COREF_PROCESSES,  # training processes: DDP ranks (paper: 8, one per A100)
            # one GPU per process (the SLURM profile's gpu resource asks for them all on one node)
            **{**gpu_job(80000, 2880), "gpu": COREF_PROCESSES if config["gpu"] else 0},
        conda:
            "../envs/coref.yaml"
        shell:  # torchrun: one process per GPU (resources.nproc), DDP; the same code with one process on a laptop
            "{params.python} -m torch.distributed.run --standalone --nproc_per_node {resources.nproc} "
            "-m mmemory.coref train --model {params.base:q} --train {input.train:q} --val {input.val:q} "
            "--out {output.model:q} --checkpoints {params.checkpoints:q} --metrics {output.metrics:q} "
            "--config {params.settings:q} --threads {threads} --log-file {log:q} >> {log:q} 2>&1"

    rule eval_coref:
        input:
            unpack(coref_eval_inputs),
            test="results/coref/data/{split}.json",
        output:
            eval="results/coref/{model}/{variant}/s{seed}/{split}/eval.json",
        wildcard_constraints:
            variant="before|finetuned",
            split="val|test",
        params:
            model=coref_model_param,
            eval=CCFG["eval"],
        log:
            "results/logs/coref/eval_coref_{model}_{variant}_s{seed}_{split}.log",
        benchmark:
            "results/benchmarks/coref/eval_coref_{model}_{variant}_s{seed}_{split}.tsv"
        threads: 1
        resources:
            **gpu_job(32000, 240),
        conda:
            "../envs/coref.yaml"
        script:
            "../workflow_scripts/coref_eval.py"

    rule coref_table:
        input:
            evals=[p for variants in coref_runs().values() for paths in variants.values() for p in paths],
            train="results/coref/data/train.json",
            val="results/coref/data/val.json",  # chooses the shortcut logistic regression's C
            test="results/coref/data/test.json",
            train_metrics=[p for paths in coref_train_metrics().values() for p in paths],
            data_report="results/coref/data_report.json",
        output:
            metrics="results/coref/metrics.json",
            figure=report(
                "results/coref/accuracy.png",
                caption="../resources/report/coref_accuracy.rst",
                category="Coref",
            ),
        params:
            runs=coref_runs(),
            train_metrics=coref_train_metrics(),
            # toy data: the rule reader (oracle ceiling), accuracy per dialogue kind and its claims
            oracle=CCFG["data"]["source"] == "toy",
        log:
            "results/logs/coref/coref_table.log",
        benchmark:
            "results/benchmarks/coref/coref_table.tsv"
        conda:
            "../envs/core.yaml"
        script:
            "../workflow_scripts/coref_table.py"

    REPORT_METRICS["Coreference in multimodal dialogue (coref)"] = "results/coref/metrics.json"
    REPORT_FIGURES["results/coref/accuracy.png"] = (
        "coref: object-level accuracy on test per model, before and after fine-tuning, under both protocols "
        "(greedy generation parsed; option likelihood), with 95% intervals; dashed lines are the baselines"
    )
