REPORT_FILES = ["report.md", "report.csv", "report.html", "cmc.png", "cc_bars.png"]


rule report:
    input:
        lambda wildcards: table_metrics(wildcards.dataset, "registry"),
    output:
        expand("results/{{dataset}}/{name}", name=REPORT_FILES),
    params:
        code=stage_code("report"),
    log:
        "logs/{dataset}/report.log",
    conda:
        "../envs/ccreid.yaml"
    shell:
        "ccreid report --dataset {wildcards.dataset} 2>&1 | tee {log}"


rule table_report:
    input:
        lambda wildcards: table_metrics(wildcards.dataset, wildcards.table),
    output:
        expand("results/{{dataset}}/{{table}}/{name}", name=REPORT_FILES),
    params:
        code=stage_code("report"),
        experiments=lambda wildcards: " ".join(TABLES[wildcards.table]),
    log:
        "logs/{dataset}/report-{table}.log",
    conda:
        "../envs/ccreid.yaml"
    wildcard_constraints:
        table="|".join(TABLES),
    shell:
        "ccreid report --dataset {wildcards.dataset} --out results/{wildcards.dataset}/{wildcards.table}"
        " --experiments {params.experiments} 2>&1 | tee {log}"


rule gates:
    input:
        expand("results/{dataset}/gates/report.md", dataset=config.get("dataset", DEFAULT_DATASET)),


rule modules:
    input:
        expand("results/{dataset}/modules/report.md", dataset=config.get("dataset", DEFAULT_DATASET)),
