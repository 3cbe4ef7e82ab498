#!/usr/bin/env bash
# Runs every libFuzzer target for RUNS executions (default 10,000,000), one
# after the other, from the seeds `pvm-parse-fuzz --dump-seeds SEEDS` wrote.
# Usage: ./run-all.sh SEEDS [RUNS] [fn ...]. Corpora grow in corpus/<fn>,
# crashes land in artifacts/, logs in logs/<fn>.txt. MAX_TIME=S stops each
# target after S seconds even if RUNS are not done.
set -u
cd "$(dirname "$0")"
seeds=$1
runs=${2:-10000000}
shift $(( $# > 1 ? 2 : 1 ))
# fn:target:max_len
all="blob:blob:65536 program_v0_8:program-0.8:65536 program_v0_7:program-0.7:65536
program_parts:program-parts:16384 standard:standard:65536 jam:jam:65536
natural:natural:1024 decode:decode:1024 asm_v0_8:asm-0.8:16384
asm_v0_7:asm-0.7:16384 disasm:disasm:16384 vector:vector:32768 exec:exec:16384"
mkdir -p corpus artifacts logs
status=0
for entry in $all; do
    IFS=: read -r fn target max <<< "$entry"
    if [ $# -gt 0 ] && [[ ! " $* " == *" $fn "* ]]; then continue; fi
    mkdir -p "corpus/$fn"
    start=$(date +%s)
    ./target/x86_64-unknown-linux-gnu/release/"$fn" "corpus/$fn" "$seeds/$target" \
        -runs="$runs" -max_total_time="${MAX_TIME:-0}" -max_len="$max" \
        -timeout=30 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$fn-" -print_final_stats=1 > "logs/$fn.txt" 2>&1
    rc=$?
    end=$(date +%s)
    execs=$(grep -o 'number_of_executed_units: *[0-9]*' "logs/$fn.txt" | grep -o '[0-9]*$')
    cov=$(grep -E '^#[0-9]+[[:space:]]+DONE' "logs/$fn.txt" | grep -o 'cov: [0-9]* ft: [0-9]*')
    echo "$fn ($target): exit $rc, ${execs:-?} execs, $((end - start)) s, $cov"
    [ $rc -ne 0 ] && status=1
done
exit $status
