#!/bin/sh
# CLI checks run inside the arm64 16 KiB VM (vmtest/arm64/run): `mmkit residency` and
# `mmkit maps` against kernel facts (file sizes in 16 KiB pages, /proc/PID/maps and
# smaps_rollup), and what `mmkit tour` says about the page size. $1 is a directory on the ext4
# scratch disk (eviction means nothing on tmpfs). Prints one line per check and a
# cargo-test-style summary; exits 1 on any failure.

DIR=${1:?usage: cli-checks.sh DIR}/cli-checks
mkdir -p "$DIR"
. "$(dirname "$0")/cli-lib.sh"

# json_total KEY: the "total" object's KEY in $OUT (mmkit residency --json, pretty-printed).
json_total() { sed -n '/"total"/,$p' $OUT | sed -n "s/^ *\"$1\": \([0-9]*\),*$/\1/p" | head -n1; }

PAGE=$(($(grep -m1 KernelPageSize /proc/self/smaps | tr -s ' ' | cut -d' ' -f2) * 1024))
[ "$PAGE" -eq 16384 ] || bad page_size "grep KernelPageSize /proc/self/smaps" "16384-byte pages, got $PAGE"

# residency: 1 MiB is 64 pages of 16 KiB, 1 MiB + 100 B is 65; 100 B is one page.
dd if=/dev/urandom of="$DIR/one-mib" bs=16384 count=64 2>/dev/null
dd if=/dev/urandom of="$DIR/one-mib-plus" bs=100 count=10486 2>/dev/null # 1048600 B
head -c 100 /dev/urandom >"$DIR/small"
: >"$DIR/empty"
sync
# size_pages FILE: the file's size in the kernel's pages, rounded up.
size_pages() { echo $((($(wc -c <"$1") + PAGE - 1) / PAGE)); }
want=$(($(size_pages "$DIR/one-mib") + $(size_pages "$DIR/one-mib-plus") + $(size_pages "$DIR/small")))
[ "$want" -eq $((64 + 65 + 1)) ] || bad page_arithmetic "wc -c" "64 + 65 + 1 pages, got $want"

check_counts() {
    name=$1 pages=$2 resident=$3
    shift 3
    if "$@" --json >$OUT 2>$ERR && [ "$(json_total pages)" = "$pages" ] && [ "$(json_total resident_pages)" = "$resident" ]; then
        ok "$name"
    else
        bad "$name" "$*" "pages $pages, resident_pages $resident"
    fi
}
check_counts residency_evict_16k "$want" 0 mmkit residency --evict "$DIR"
check_counts residency_cold_16k "$want" 0 mmkit residency "$DIR"
check_counts residency_touch_16k "$want" "$want" mmkit residency --touch "$DIR"
check_counts residency_warm_one_file 65 65 mmkit residency "$DIR/one-mib-plus"
check_counts residency_evict_one_file 64 0 mmkit residency --evict "$DIR/one-mib"
check_counts residency_after_evict "$want" $((want - 64)) mmkit residency "$DIR"
# Reading one byte at 40 KiB faults in at least its 16 KiB page (read-ahead may bring more).
dd if="$DIR/one-mib" of=/dev/null bs=1 count=1 skip=40960 2>/dev/null
mmkit residency --json "$DIR/one-mib" >$OUT 2>$ERR
r=$(json_total resident_pages)
if [ -n "$r" ] && [ "$r" -ge 1 ] && [ "$r" -le 64 ]; then ok residency_one_read; else bad residency_one_read "mmkit residency" "1..64 resident pages, got '$r'"; fi
expect_has residency_table "Resident Pages: $want/$want" mmkit residency --touch -q "$DIR"
expect_fail residency_missing "ENOENT" mmkit residency "$DIR/missing"

# maps: sizes are 16 KiB multiples, and they match /proc/PID/maps line by line.
sleep 60 &
SLEEPER=$!
sleep 0.3
mmkit maps "$SLEEPER" --json >$OUT 2>$ERR || bad maps_json "mmkit maps $SLEEPER --json" "exit 0"
# The rows' sizes: the "mappings" array comes before "by_kind" and "total", which have sizes too.
ours=$(sed -n '/"by_kind"/q; s/^ *"size_kib": \([0-9]*\),*$/\1/p' $OUT | tr '\n' ' ')
kernel=$(while read -r range _; do
    printf '%d ' $(((0x${range#*-} - 0x${range%-*}) / 1024))
done </proc/$SLEEPER/maps)
if [ -n "$ours" ] && [ "$ours" = "$kernel" ]; then ok maps_sizes_equal_proc_maps; else bad maps_sizes_equal_proc_maps "mmkit maps $SLEEPER --json" "sizes '$kernel'"; fi
odd=0
for s in $ours; do [ $((s % 16)) -eq 0 ] || odd=$((odd + 1)); done
if [ -n "$ours" ] && [ "$odd" -eq 0 ]; then ok maps_sizes_are_16k_multiples; else bad maps_sizes_are_16k_multiples "mmkit maps $SLEEPER --json" "every size_kib a multiple of 16 ($odd are not)"; fi
rss=$(sed -n '/"total"/,$p' $OUT | sed -n 's/^ *"rss_kib": \([0-9]*\),*$/\1/p' | head -n1)
rollup=$(sed -n 's/^Rss: *\([0-9]*\) kB$/\1/p' /proc/$SLEEPER/smaps_rollup)
if [ -n "$rss" ] && [ "$rss" = "$rollup" ]; then ok maps_rss_equals_smaps_rollup; else bad maps_rss_equals_smaps_rollup "mmkit maps $SLEEPER --json" "total rss_kib $rollup"; fi
expect_has maps_table "[stack]" mmkit maps "$SLEEPER"
kill "$SLEEPER"
wait "$SLEEPER" 2>/dev/null
expect_fail maps_no_such_process "process 4294967295" mmkit maps 4294967295

# The tour (its files on the scratch disk), shown in full; it reports the kernel's page size.
TMPDIR=$DIR mmkit tour --only file,anon >$OUT 2>$ERR
rc=$?
cat $OUT
if [ "$rc" -eq 0 ] && grep -q 'page size (from the kernel) *16.0 KiB' $OUT; then ok tour_page_size; else bad tour_page_size "mmkit tour --only file,anon" "exit 0, page size 16.0 KiB"; fi
if grep -q 'first touch of 256 MiB, 16.0 KiB pages' $OUT; then ok tour_first_touch_page_size; else bad tour_first_touch_page_size "mmkit tour --only file,anon" "first touch of 256 MiB, 16.0 KiB pages"; fi

cli_summary
