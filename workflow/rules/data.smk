rule synth:
    output:
        directory(RAW),
    params:
        code=stage_code("synth"),
        cfg=synth_params,
    conda:
        "../envs/ccreid.yaml"
    log:
        job_log("synth"),
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
        directory(PREPARED),
    params:
        code=layout_code,
        cfg=prepare_params,
    conda:
        "../envs/ccreid.yaml"
    log:
        job_log("prepare"),
    benchmark:
        job_benchmark("prepare")
    threads: workflow.cores
    shell:
        "ccreid prepare --dataset {wildcards.dataset} --out {output} 2>&1 | tee {log}"
