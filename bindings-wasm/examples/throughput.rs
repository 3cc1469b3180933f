//! The native side of the wasm speed comparison: runs the same workload as `throughputWorkload` in wasm and
//! prints `native-ms=<median> checksum=<value>` (used by `make bench`).

use std::time::Instant;

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let (agents, per_agent, runs) = (args[0], args[1], args.get(2).copied().unwrap_or(5));
    let mut times = Vec::new();
    let mut checksum = 0;
    for _ in 0..runs {
        let t = Instant::now();
        checksum = cxone_agent_state_core::sim::throughput_workload(agents, per_agent);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "native-ms={:.3} checksum={}",
        times[times.len() / 2],
        checksum & ((1 << 52) - 1)
    );
}
