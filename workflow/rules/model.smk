rule weights:
    output:
        "data/weights/{weights_file}",
    params:
        code=stage_code("weights"),
        backbone=lambda wildcards: WEIGHT_FILES[wildcards.weights_file],
    conda:
        "../envs/ccreid.yaml"
    log:
        "logs/weights/{weights_file}.log",
    benchmark:
        str(paths.weights_benchmark_path("{weights_file}"))
    wildcard_constraints:
        weights_file="|".join(re.escape(name) for name in WEIGHT_FILES),
    shell:
        "ccreid weights --backbone {params.backbone} 2>&1 | tee {log}"


rule train:
    input:
        prepared="data/prepared/{dataset}",
        weights=initial_weights,
    output:
        "results/{dataset}/{exp}/model.pt",
    params:
        code=run_code("train"),
        cfg=train_params,
    conda:
        "../envs/ccreid.yaml"
    log:
        "logs/{dataset}/{exp}/train.log",
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
        prepared="data/prepared/{dataset}",
        model=trained_model,
    output:
        "results/{dataset}/{exp}/features.h5",
    params:
        code=run_code("extract"),
        cfg=eval_params(EXTRACT_KEYS),
    conda:
        "../envs/ccreid.yaml"
    log:
        "logs/{dataset}/{exp}/extract.log",
    benchmark:
        run_benchmark("extract")
    threads: cpu_threads("extract")
    shell:
        "ccreid extract --dataset {wildcards.dataset} --exp {wildcards.exp} --prepared {input.prepared}"
        " --model {input.model} --out {output} 2>&1 | tee {log}"


rule evaluate:
    input:
        "results/{dataset}/{exp}/features.h5",
    output:
        metrics="results/{dataset}/{exp}/metrics.json",
        per_query="results/{dataset}/{exp}/per_query.csv",
        cmc="results/{dataset}/{exp}/cmc.csv",
    params:
        code=stage_code("evaluate"),
        cfg=eval_params(EVAL_KEYS),
    conda:
        "../envs/ccreid.yaml"
    log:
        "logs/{dataset}/{exp}/evaluate.log",
    benchmark:
        run_benchmark("evaluate")
    shell:
        "ccreid evaluate --dataset {wildcards.dataset} --exp {wildcards.exp} --features {input}"
        " --out {output.metrics} 2>&1 | tee {log}"
