#!/usr/bin/env bash
# Self-time shares of a perf.data (from bench/profile.sh with KEEP=1) grouped by what the code
# is: kernel (scheduler, ext4, block I/O, TCP), Wasm guest code, wasmtime, redb, malloc, tokio.
#   bash bench/profile-categories.sh target/bench-work/profile.XXXX/perf.data
perf report -i "$1" --no-children -g none --sort dso,sym --stdio 2>/dev/null | grep -E "^ +[0-9.]+%" | awk '
{ pct=$1; sub("%","",pct); dso=$2; sym=""; for(i=4;i<=NF;i++) sym=sym" "$i;
  c="other user";
  if (dso ~ /kernel/) {
    if (sym ~ /finish_task_switch|__schedule|schedule|pick_next|enqueue|dequeue|try_to_wake|ttwu|futex|select_task/) c="kernel: scheduler/wakeups";
    else if (sym ~ /find_get_block|recently_deleted|ext4|jbd2|find_inode|brelse|filemap|folio|inode|dentry|d_lookup|path_|xas_/) c="kernel: ext4/page cache";
    else if (sym ~ /iowrite|virtio|virtqueue|blk_|bio|nvme|scsi/) c="kernel: block I/O submit";
    else if (sym ~ /tcp|ip_|skb|sock|net_|dev_queue|softirq|napi|loopback/) c="kernel: TCP loopback";
    else c="kernel: other";
  } else if (dso ~ /JIT/) c="Wasm guest code (JIT)";
  else if (sym ~ /redb::/) c="redb (plugin kv)";
  else if (sym ~ /wasmtime|cranelift|fiber/) c="wasmtime runtime (calls, lift/lower, fibers)";
  else if (sym ~ /malloc|free|realloc|memmove|memcpy|memset|memcmp|_int_/) c="libc: malloc/memcpy";
  else if (sym ~ /tokio|mio|parking_lot|futex|std::sys::sync|park/) c="tokio/threads";
  else if (sym ~ /mailwit::plugins|mailwit::metrics|prometheus/) c="mailwit: plugin glue + metrics";
  else if (sym ~ /mailwit/) c="mailwit: other";
  s[c]+=pct }
END { for (c in s) printf "%6.2f%%  %s\n", s[c], c }' | sort -rn
