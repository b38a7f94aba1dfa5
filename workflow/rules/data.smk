rule synth:
    output:
        directory("data/raw/{dataset}"),
    params:
        code=stage_code("synth"),
        cfg=synth_params,
    conda:
        "../envs/ccreid.yaml"
    log:
        "logs/{dataset}/synth.log",
    benchmark:
        job_benchmark("synth")
    wildcard_constraints:
        dataset="|".join(SYNTHETIC) or "^$",
    shell:
        "ccreid synth --dataset {wildcards.dataset} --out {output} 2>&1 | tee {log}"


rule prepare:
    input:
        raw_root,
    output:
        directory("data/prepared/{dataset}"),
    params:
        code=layout_code,
        cfg=prepare_params,
    conda:
        "../envs/ccreid.yaml"
    log:
        "logs/{dataset}/prepare.log",
    benchmark:
        job_benchmark("prepare")
    threads: workflow.cores
    shell:
        "ccreid prepare --dataset {wildcards.dataset} --out {output} 2>&1 | tee {log}"
