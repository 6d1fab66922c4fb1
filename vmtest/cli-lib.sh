#!/bin/sh
# The check helpers both VMs' CLI checks source (vmtest/cli-checks.sh, vmtest/arm64/cli-checks.sh;
# vmtest/run and vmtest/arm64/run copy this file beside them into the initramfs). Each check
# prints one cargo-test-style line; cli_summary prints the summary and fails on any failure.
# Plain POSIX sh: the guests run busybox.

passed=0
failed=0
OUT=${OUT:-/tmp/cli-out}
ERR=${ERR:-/tmp/cli-err}

ok() { passed=$((passed + 1)); echo "test cli::$1 ... ok"; }

# bad NAME COMMAND EXPECTED: a failed check, with the command's output (cut at 2000 bytes).
bad() {
    failed=$((failed + 1))
    echo "test cli::$1 ... FAILED"
    echo "    command: $2"
    echo "    expected: $3"
    echo "    stdout: $(head -c 2000 $OUT)"
    echo "    stderr: $(head -c 2000 $ERR)"
}

# expect_out NAME EXPECTED_STDOUT CMD...: exit 0 and exactly this output.
expect_out() {
    name=$1 expected=$2
    shift 2
    if "$@" >$OUT 2>$ERR && [ "$(cat $OUT)" = "$expected" ]; then ok "$name"; else bad "$name" "$*" "exit 0, stdout '$expected'"; fi
}

# expect_has NAME TEXT CMD...: exit 0 and stdout contains TEXT.
expect_has() {
    name=$1 text=$2
    shift 2
    if "$@" >$OUT 2>$ERR && grep -qF -- "$text" $OUT; then ok "$name"; else bad "$name" "$*" "exit 0, stdout containing '$text'"; fi
}

# expect_fail NAME TEXT CMD...: exit 1 and stderr contains TEXT.
expect_fail() {
    name=$1 text=$2
    shift 2
    "$@" >$OUT 2>$ERR
    rc=$?
    if [ "$rc" -eq 1 ] && grep -qF -- "$text" $ERR; then ok "$name"; else bad "$name" "$*" "exit 1 (got $rc), stderr containing '$text'"; fi
}

# cli_summary: the cargo-test-style summary line; exits 1 when a check failed.
cli_summary() {
    if [ "$failed" -eq 0 ]; then
        echo "test result: ok. $passed passed; $failed failed; 0 ignored; 0 measured; 0 filtered out"
    else
        echo "test result: FAILED. $passed passed; $failed failed; 0 ignored; 0 measured; 0 filtered out"
        exit 1
    fi
}
