//! `callrec-lab`: places simulated FreeSWITCH calls against a running `callrec serve` and
//! prints what happened. Usage:
//!
//! ```text
//! callrec-lab [--target 127.0.0.1:8084] [--calls 10] [--rate 5] [--hold-ms 2000] [--talk-ms 3000] [--account acc-1]
//! ```

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use callrec_sim::load::{run, LoadConfig};

fn main() {
    let mut cfg = LoadConfig {
        calls: 10,
        rate: 5.0,
        hold: Duration::from_millis(2000),
        talk: Duration::from_millis(3000),
        ..LoadConfig::default()
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            usage(&format!("{flag} needs a value"));
        };
        let num = |v: &str| {
            v.parse::<f64>()
                .unwrap_or_else(|_| usage(&format!("bad number {v}")))
        };
        match flag.as_str() {
            "--target" => {
                use std::net::ToSocketAddrs;
                cfg.target = value
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .unwrap_or_else(|| usage("bad --target (host:port)"))
            }
            "--calls" => cfg.calls = num(value) as usize,
            "--rate" => cfg.rate = num(value),
            "--hold-ms" => cfg.hold = Duration::from_millis(num(value) as u64),
            "--talk-ms" => cfg.talk = Duration::from_millis(num(value) as u64),
            "--account" => cfg.variables = vec![("callrec_account_id".into(), value.clone())],
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| usage(&e.to_string()));
    let r = rt.block_on(run(cfg.clone(), Arc::new(AtomicUsize::new(0))));
    println!(
        "calls placed {}  refused {}  handed back {}  recorded {}  completed {}  timeouts {}  peak live {}  in {:.1} s",
        r.placed,
        r.refused,
        r.handed_back,
        r.recorded,
        r.completed,
        r.timeouts,
        r.peak_live,
        r.elapsed.as_secs_f64()
    );
    if let (Some(p50), Some(p99)) = (r.quantile(0.5), r.quantile(0.99)) {
        println!("answer -> uuid_record  p50 {p50:?}  p99 {p99:?}");
    }
}

fn usage(why: &str) -> ! {
    eprintln!("callrec-lab: {why}\nusage: callrec-lab [--target ADDR] [--calls N] [--rate PER_S] [--hold-ms MS] [--talk-ms MS] [--account ID]");
    std::process::exit(2)
}
