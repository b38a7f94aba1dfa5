rule weights:
    output:
        str(WEIGHTS_DIR / "{weights_file}"),
    params:
        code=stage_code("weights"),
        backbone=lambda wildcards: WEIGHT_FILES[wildcards.weights_file],
    conda:
        "../envs/ccreid.yaml"
    log:
        str(paths.weights_log_path("{weights_file}")),
    benchmark:
        str(paths.weights_benchmark_path("{weights_file}"))
    wildcard_constraints:
        weights_file="|".join(re.escape(name) for name in WEIGHT_FILES),
    shell:
        "ccreid weights --backbone {params.backbone} 2>&1 | tee {log}"


rule train:
    input:
        prepared=PREPARED,
        weights=initial_weights,
    output:
        str(RUN / paths.MODEL),
    params:
        code=run_code("train"),
        cfg=train_params,
    conda:
        "../envs/ccreid.yaml"
    log:
        run_log("train"),
    benchmark:
        run_benchmark("train")
    threads: cpu_threads("train")
    resources:
        gpu=1,
    shell:
        "ccreid train --dataset {wildcards.dataset} --exp {wildcards.exp}"
        " --prepared {input.prepared} --out {output} 2>&1 | tee {log}"


rule extract:
    input:
        prepared=PREPARED,
        model=trained_model,
    output:
        str(RUN / paths.FEATURES),
    params:
        code=run_code("extract"),
        cfg=eval_params(EXTRACT_KEYS),
    conda:
        "../envs/ccreid.yaml"
    log:
        run_log("extract"),
    benchmark:
        run_benchmark("extract")
    threads: cpu_threads("extract")
    shell:
        "ccreid extract --dataset {wildcards.dataset} --exp {wildcards.exp} --prepared {input.prepared}"
        " --model {input.model} --out {output} 2>&1 | tee {log}"


rule evaluate:
    input:
        str(RUN / paths.FEATURES),
    output:
        metrics=str(RUN / paths.METRICS),
        per_query=str(RUN / paths.PER_QUERY),
        cmc=str(RUN / paths.CMC),
    params:
        code=stage_code("evaluate"),
        cfg=eval_params(EVAL_KEYS),
    conda:
        "../envs/ccreid.yaml"
    log:
        run_log("evaluate"),
    benchmark:
        run_benchmark("evaluate")
    shell:
        "ccreid evaluate --dataset {wildcards.dataset} --exp {wildcards.exp} --features {input}"
        " --out {output.metrics} 2>&1 | tee {log}"
