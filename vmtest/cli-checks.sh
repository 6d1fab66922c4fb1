#!/bin/sh
# CLI checks run inside the vmtest VM, against QEMU's edu device bound to uio_pci_generic as
# /dev/uio0 and QEMU's ivshmem-plain (256-byte BAR0 as /dev/uio1, 1 MiB prefetchable BAR2). Prints one line per check and a cargo-test-style summary; exits 1 on any failure.

. "$(dirname "$0")/cli-lib.sh"

EDU=
for dev in /sys/bus/pci/devices/*; do
    [ "$(cat "$dev/vendor")" = "0x1234" ] && [ "$(cat "$dev/device")" = "0x11e8" ] && EDU=$(basename "$dev")
done
BAR0=$(head -n1 /sys/bus/pci/devices/$EDU/resource | cut -d' ' -f1)
BAR0=$(printf '0x%x' "$BAR0")

# read: ident through each source, text and JSON.
expect_out read_uio "0x010000ed" mmkit mmio read --uio 0 0x0
expect_out read_uio_map "0x010000ed" mmkit mmio read --uio 0:0 0
expect_out read_pci_id "0x010000ed" mmkit mmio read --pci 1234:11e8 0x0
expect_out read_pci_bdf "0x010000ed" mmkit mmio read --pci "$EDU" --bar 0 0x0
expect_out read_phys "0x010000ed" mmkit mmio read --phys "$BAR0" 0x0
expect_out read_json '{"source":"/dev/uio0 map0","offset":0,"width":32,"value":16777453}' mmkit mmio read --uio 0 0x0 --json
expect_out read_phys_json "{\"source\":\"/dev/mem $BAR0\",\"offset\":0,\"width\":32,\"value\":16777453}" mmkit mmio read --phys "$BAR0" --json

# write + read: liveness, decimal and hex values, across sources.
expect_out write_silent "" mmkit mmio write --uio 0 0x4 0x12345678
expect_out liveness_uio "0xedcba987" mmkit mmio read --uio 0 0x4
expect_out write_json '{"source":"/dev/uio0 map0","offset":4,"width":32,"value":255}' mmkit mmio write --uio 0 4 255 --json
expect_out liveness_pci "0xffffff00" mmkit mmio read --pci 1234:11e8 4
expect_out liveness_phys_json "{\"source\":\"/dev/mem $(printf '0x%x' $((BAR0 + 4)))\",\"offset\":4,\"width\":32,\"value\":4294967040}" mmkit mmio read --phys "$BAR0" 4 --json

# factorial: write 5 to 0x08, read 120 back once computed.
mmkit mmio write --uio 0 0x8 5 >$OUT 2>$ERR
sleep 0.2
expect_out factorial "0x00000078" mmkit mmio read --uio 0 0x8
expect_out read_64bit_dma "0x0000000000000000" mmkit mmio read --uio 0 0x98 --width 64

# errors: width rules, bounds, alignment, value range, missing devices.
expect_fail width_8_refused "8-bit access not allowed: edu accepts only 32-bit accesses at 0x0" mmkit mmio read --uio 0 0x0 --width 8
expect_fail width_64_refused "64-bit access not allowed" mmkit mmio write --uio 0 0x8 1 --width 64
expect_fail out_of_bounds "read of /dev/uio0 map0 [offset 0x100000, len 0x4] failed" mmkit mmio read --uio 0 0x100000
expect_fail misaligned "not aligned to 4 bytes" mmkit mmio read --uio 0 0x6
"$(command -v mmkit)" mmio write --uio 0 0x4 0x100000000 >$OUT 2>$ERR
if [ $? -eq 2 ] && grep -q "does not fit in a 32-bit register" $ERR; then ok value_too_wide; else bad value_too_wide "mmkit mmio write --uio 0 0x4 0x100000000" "exit 2 (a usage error) naming the register width"; fi
expect_fail no_such_uio "mmkit: cannot open UIO device 7" mmkit mmio read --uio 7 0
expect_fail no_such_map "cannot map map3 of /dev/uio0" mmkit mmio read --uio 0:3 0
expect_fail no_such_bar "BAR2" mmkit mmio read --pci 1234:11e8 --bar 2 0
# --phys outside a BAR (the BIOS area, which /dev/mem allows): a --profile speaks of offsets
# from ADDR. Regression: it was checked at offset 0 of the one-register window mapped at
# ADDR + OFFSET, so a refused width passed and an allowed one was refused.
printf '0x20..0x24 32\n0x0.. any\n' > /tmp/p32.txt
printf '0x0..0x10 8\n' > /tmp/p8.txt
expect_fail phys_profile_at_offset "8-bit access not allowed: profile accepts only 32-bit accesses at 0x20" mmkit mmio read --phys 0xf0000 0x20 --width 8 --profile /tmp/p32.txt
expect_has phys_profile_elsewhere "0x" mmkit mmio read --phys 0xf0000 0x20 --width 32 --profile /tmp/p8.txt
"$(command -v mmkit)" mmio read 0 >$OUT 2>$ERR
if [ $? -eq 2 ]; then ok usage_error_exit_2; else bad usage_error_exit_2 "mmkit mmio read 0" "exit 2 without a source"; fi

# list: text and JSON.
expect_has list_uio "/dev/uio0  uio_pci_generic  pci $EDU [1234:11e8]" mmkit mmio list
expect_has list_map "map0  addr $BAR0  size 0x100000 (1.0 MiB)" mmkit mmio list
expect_has list_bar "BAR0  $BAR0  size 0x100000" mmkit mmio list
expect_has list_json_size '"size": 1048576' mmkit mmio list --json
expect_has list_json_id '"id": "1234:11e8"' mmkit mmio list --json

# irq: a raised interrupt arrives; none times out.
mmkit mmio write --uio 0 0x64 0xffffffff
before=$(cat /sys/class/uio/uio0/event)
(sleep 0.5; mmkit mmio write --uio 0 0x60 0x8) &
expect_out irq_one "interrupt 1: count $((before + 1)) (missed 0)" mmkit mmio irq --uio 0 --count 1 --timeout 10
wait
# The line stays raised until acknowledged, so every re-enable brings the next interrupt.
expect_out irq_json "{\"device\":\"/dev/uio0\",\"enabled_by\":\"pci-command\",\"interrupts\":[{\"count\":$((before + 2)),\"missed\":0},{\"count\":$((before + 3)),\"missed\":0}]}" mmkit mmio irq --uio 0 --count 2 --timeout 5 --json
mmkit mmio write --uio 0 0x64 0x8
expect_fail irq_timeout "interrupt 1 of 1 did not arrive" mmkit mmio irq --uio 0 --count 1 --timeout 0.3

# the edu example and the tour section run on the device.
expect_has edu_example "factorial  12! = 479001600 (interrupt #" edu
expect_has tour_mmio_example "tour_mmio: ok (interrupt #" tour_mmio
expect_has tour_ident "0x010000ed" mmkit tour --only mmio
expect_has tour_json '"ident": 16777453' mmkit tour --only mmio --json

# The second device, ivshmem-plain: a sub-page BAR0 through every source, bounds at the BAR's
# size, write-combining on the prefetchable BAR2 (vmtest/run checks on the host what
# ivshmem_write_wc wrote at 0x2000), width warnings and profiles.
IVSHMEM=
for dev in /sys/bus/pci/devices/*; do
    [ "$(cat "$dev/vendor")" = "0x1af4" ] && [ "$(cat "$dev/device")" = "0x1110" ] && IVSHMEM=$(basename "$dev")
done
IV0=$(printf '0x%x' "$(sed -n 1p /sys/bus/pci/devices/$IVSHMEM/resource | cut -d' ' -f1)")
expect_out ivshmem_pci_bar0 "" mmkit mmio write --pci 1af4:1110 0x0 0x5a5aa5a5
expect_out ivshmem_uio_bar0 "0x5a5aa5a5" mmkit mmio read --uio 1 0x0
expect_out ivshmem_phys_bar0 "0x5a5aa5a5" mmkit mmio read --phys "$IV0" 0x0
mmkit mmio write --uio 1 0x0 0 >$OUT 2>$ERR
expect_out ivshmem_last_register "0x00000000" mmkit mmio read --pci "$IVSHMEM" --bar 0 0xfc
expect_fail ivshmem_pci_past_bar0 "past the end of the 0x100-byte region" mmkit mmio read --pci 1af4:1110 0x100
expect_fail ivshmem_uio_past_bar0 "read of /dev/uio1 map0 [offset 0x100, len 0x4] failed" mmkit mmio read --uio 1 0x100
expect_fail ivshmem_phys_past_bar0 "past the end of the 0x100-byte region" mmkit mmio read --phys "$IV0" 0x100
expect_fail ivshmem_width "ivshmem registers accepts only 32-bit accesses" mmkit mmio read --pci 1af4:1110 --width 8 0x0
expect_out ivshmem_write_wc "" mmkit mmio write --pci 1af4:1110 --bar 2 --wc 0x2000 0x3cc3a55a
expect_out ivshmem_read_uc "0x3cc3a55a" mmkit mmio read --pci 1af4:1110 --bar 2 0x2000
expect_out ivshmem_read_wc_byte "0x5a" mmkit mmio read --pci 1af4:1110 --bar 2 --wc --width 8 0x2000
expect_fail ivshmem_wc_not_prefetchable "BAR0 of $IVSHMEM is not prefetchable" mmkit mmio read --pci 1af4:1110 --wc 0x0
expect_fail ivshmem_past_bar2 "past the end of the 0x100000-byte region" mmkit mmio read --pci 1af4:1110 --bar 2 --wc 0x100000
expect_has ivshmem_list_bar0 "BAR0  $IV0  size 0x100 (256 B)" mmkit mmio list
expect_has ivshmem_list_bar2 "64-bit prefetchable" mmkit mmio list
# Known devices read silently; an address in no BAR warns that the width may not be valid, and a
# profile states the widths.
mmkit mmio read --pci 1af4:1110 0x0 >$OUT 2>$ERR
if [ ! -s $ERR ]; then ok no_warning_for_known_device; else bad no_warning_for_known_device "mmkit mmio read --pci 1af4:1110 0x0" "empty stderr"; fi
echo "name ivshmem-test" >/tmp/iv.profile
echo "0x0..0x100 32/64" >>/tmp/iv.profile
expect_fail profile_applies "ivshmem-test accepts only 32/64-bit accesses" mmkit mmio read --pci 1af4:1110 --width 16 --profile /tmp/iv.profile 0x0
# A device mmkit has no rules for: the first memory BAR of another PCI device (q35's own).
OTHER=$(mmkit mmio list | awk '/^  [0-9a-f]+:/ { dev = $1; id = $2; next }
    /^    BAR/ && id != "[1234:11e8]" && id != "[1af4:1110]" && dev != "" { sub("BAR", "", $1); print dev, $1; exit }')
if [ -n "$OTHER" ]; then
    set -- $OTHER
    mmkit mmio read --pci "$1" --bar "$2" 0x0 >$OUT 2>$ERR
    if grep -qF "mmkit: warning: no width rules are known for /sys/bus/pci/devices/$1/resource$2 (BAR$2)" $ERR; then
        ok width_warning_unknown_device
    else
        bad width_warning_unknown_device "mmkit mmio read --pci $1 --bar $2 0x0" "a width warning on stderr"
    fi
else
    bad width_warning_unknown_device "mmkit mmio list" "a PCI device other than edu and ivshmem with a memory BAR"
fi

cli_summary
