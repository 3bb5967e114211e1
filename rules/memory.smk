# Stage 'memory': a persistent multimodal memory store (mmemory.memory) scored by relevance, recency, frequency and
# saliency; its ablation on long chained sessions, and the retrieved context that feeds the <reminder> prompt.
#   memory_sessions          chained sessions + back-referring queries per split -> results/memory/sessions/{split}/
#   memory_evaluate          the ablation: tuned on train, chosen on val, reported on test
#                                                         -> results/memory/<encoder>/metrics.json, recall.png
#   memory_reminder_context  top-k memories per dialogue of a split (read by the reminder stage); the weights are
#                            chosen on val (recall of the needed earlier picture) and used as they are on test
#                                                         -> results/memory/reminder_context_{split}.json
# The stage functions are in mmemory/memory/stage.py; each rule gets only the settings it reads.


if stage_active("memory"):
    MCFG = config["memory"]
    MEMORY_VARIANT = MCFG["encoder"]["name"]
    # The encoder checkpoint is a DAG input when the workflow builds it (e.g. the toy CLIP of the emr stage).
    MEMORY_ENCODER_PATH = MCFG["encoder"]["path"]
    MEMORY_ENCODER_INPUT = [MEMORY_ENCODER_PATH] if str(MEMORY_ENCODER_PATH).startswith("results/") else []
    # ImageBind only runs in its own env (the store needs faiss-cpu there too); the rest in core.
    MEMORY_ENV = "../envs/imagebind.yaml" if MCFG["encoder"]["kind"] == "imagebind" else "../envs/core.yaml"
    MEMORY_TUNE = MCFG["tune"]["sessions"] > 0
    MEMORY_SESSION_SPLITS = (["train"] if MEMORY_TUNE else []) + ["val", "test"]

    rule memory_sessions:
        input:
            dialogs="results/data/{split}.json",
        output:
            turns="results/memory/sessions/{split}/turns.jsonl",
            queries="results/memory/sessions/{split}/queries.jsonl",
        params:
            sessions=MCFG["sessions"],
            # the train sessions only tune the `tuned` method's weights: at most tune.sessions of them
            max_sessions=lambda w: MCFG["tune"]["sessions"] if w.split == "train" else None,
            seed=config["seed"],
        log:
            "results/logs/memory/memory_sessions_{split}.log",
        benchmark:
            "results/benchmarks/memory/memory_sessions_{split}.tsv"
        conda:
            "../envs/core.yaml"
        script:
            "../workflow_scripts/memory_sessions.py"

    rule memory_evaluate:
        input:
            sessions=expand("results/memory/sessions/{split}/{kind}.jsonl", split=MEMORY_SESSION_SPLITS,
                            kind=["turns", "queries"]),
            encoder=MEMORY_ENCODER_INPUT,
        output:
            metrics=f"results/memory/{MEMORY_VARIANT}/metrics.json",
            per_query=f"results/memory/{MEMORY_VARIANT}/per_query.json",
            figure=report(
                f"results/memory/{MEMORY_VARIANT}/recall.png",
                caption="../resources/report/memory_recall.rst",
                category="Memory",
            ),
        params:
            sessions={s: [f"results/memory/sessions/{s}/{kind}.jsonl" for kind in ("turns", "queries")]
                      for s in MEMORY_SESSION_SPLITS},
            encoder=MCFG["encoder"],
            memory=settings("memory", "methods", "retrieve_k", "half_life", "recency_unit"),
            index=MCFG["index"],
            tune=MCFG["tune"],
            observations=MCFG["observations"],   # off by default (enabled: false): it needs an Ollama server
            workdir=f"results/memory/{MEMORY_VARIANT}/eval_stores",
        threads: 1  # startup-bound on the embedded default: two such jobs side by side beat one on 2 threads (same outputs)
        resources:
            **gpu_job(32000, 240),
        log:
            f"results/logs/memory/memory_evaluate_{MEMORY_VARIANT}.log",
        benchmark:
            f"results/benchmarks/memory/memory_evaluate_{MEMORY_VARIANT}.tsv"
        conda:
            MEMORY_ENV
        script:
            "../workflow_scripts/memory_evaluate.py"

    rule memory_reminder_context:
        input:
            dialogs="results/data/{split}.json",
            encoder=MEMORY_ENCODER_INPUT,
            # test uses the weights that val chose (val scores the configured weights and every memory.methods entry)
            chosen=lambda w: [f"results/memory/{MEMORY_VARIANT}/reminder_context_val_metrics.json"]
            if w.split == "test" else [],
        output:
            context="results/memory/reminder_context_{split}.json",
            metrics=f"results/memory/{MEMORY_VARIANT}/reminder_context_{{split}}_metrics.json",
        wildcard_constraints:
            split="val|test",
        params:
            encoder=MCFG["encoder"],
            reminder=MCFG["reminder"],
            memory=settings("memory", "methods", "half_life", "recency_unit"),  # methods: the candidates val tries
            index=MCFG["index"],
            select_k=config["reminder"]["memory_top_k"] or MCFG["reminder"]["k"],
            workdir=f"results/memory/{MEMORY_VARIANT}/reminder_store_{{split}}",
        threads: 1  # one thread: the same memories in the same order as two (scores differ in the 6th decimal), beside another job
        resources:
            **gpu_job(32000, 120),
        log:
            f"results/logs/memory/memory_reminder_context_{MEMORY_VARIANT}_{{split}}.log",
        benchmark:
            f"results/benchmarks/memory/memory_reminder_context_{MEMORY_VARIANT}_{{split}}.tsv"
        conda:
            MEMORY_ENV
        script:
            "../workflow_scripts/memory_reminder_context.py"

    REPORT_METRICS["Retrieval memory"] = f"results/memory/{MEMORY_VARIANT}/metrics.json"
    REPORT_METRICS["Retrieval memory: context for the reminder prompt"] = (
        f"results/memory/{MEMORY_VARIANT}/reminder_context_test_metrics.json"
    )
    REPORT_FIGURES[f"results/memory/{MEMORY_VARIANT}/recall.png"] = (
        "Retrieval memory on the test sessions: recall@k and MRR per scoring method"
    )
