//! Load benchmark (a bench binary, not criterion): the real `callrec serve` process against the
//! simulator placing `--calls` calls at `--rate` calls/s, each held long enough that about
//! `--calls` are live at once. Reports answer→uuid_record latency (p50/p99), RSS per live call
//! and CPU per call of the callrec process. See BENCHMARKS.md.
//!
//! `--follow inbound` (default `socket`) gives callrec the simulated switch's inbound event
//! socket and follows calls over it; the report then adds how long each call's outbound socket
//! stayed open and how many events FreeSWITCH serialised for callrec per call.
//!
//! `cargo bench --bench load -- [--calls 5000] [--rate 200] [--follow inbound|socket]`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callrec_sim::load::{run, LoadConfig};

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn main() {
    let mut calls = 5000usize;
    let mut rate = 200.0f64;
    let mut follow = "socket".to_string();
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--calls" => calls = args[i + 1].parse().expect("--calls N"),
            "--rate" => rate = args[i + 1].parse().expect("--rate R"),
            "--follow" => follow = args[i + 1].clone(),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let switch = callrec_sim::Switch::new("ClueCon");
    let esl = match follow.as_str() {
        "inbound" => {
            let addr = rt
                .block_on(switch.listen_inbound())
                .expect("inbound listener");
            format!("freeswitch_esl = \"{addr}\"\nfollow = \"inbound\"\n")
        }
        _ => "freeswitch_esl = \"\"\nfollow = \"socket\"\n".to_string(),
    };
    let config = dir.path().join("callrec.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nmax_calls = {}\n{esl}[record_call]\nformat = \"wav\"\nrecord_on_answer = true\n",
            dir.path().display(),
            calls * 2
        ),
    )
    .expect("config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start callrec");
    let pid = child.id();
    let target = format!("127.0.0.1:{port}").parse().unwrap();
    let up = Instant::now();
    while std::net::TcpStream::connect(target).is_err() {
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "callrec did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    let cpu_before = cpu_seconds(pid).unwrap_or(0.0);

    let hold = Duration::from_secs_f64(calls as f64 / rate);
    let cfg = LoadConfig {
        target,
        calls,
        rate,
        hold,
        talk: Duration::from_secs(1),
        step_timeout: Duration::from_secs(120),
        switch: Some(switch.clone()),
        ..LoadConfig::default()
    };
    let live = Arc::new(AtomicUsize::new(0));
    let sampler_live = live.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let sampler = std::thread::spawn(move || {
        let mut best = (0u64, 0usize);
        while !stop2.load(Ordering::Relaxed) {
            let rss = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
            let n = sampler_live.load(Ordering::Relaxed);
            // RSS at the plateau: the sample with the most live calls.
            if n >= best.1 {
                best = (rss, n);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        best
    });
    let report = rt.block_on(run(cfg, live));
    // Let the last sessions finish their bookkeeping before reading the CPU counters.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (peak_rss, live_at_peak) = sampler.join().unwrap();
    let cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    let _ = child.kill();
    let _ = child.wait();

    let p50 = report.quantile(0.5).unwrap_or_default();
    let p99 = report.quantile(0.99).unwrap_or_default();
    let max = report.quantile(1.0).unwrap_or_default();
    println!(
        "calls {calls} at {rate}/s, each held {:.1} s",
        hold.as_secs_f64()
    );
    println!(
        "placed {} refused {} handed_back {} recorded {} completed {} timeouts {} peak_live {} elapsed {:.1} s",
        report.placed,
        report.refused,
        report.handed_back,
        report.recorded,
        report.completed,
        report.timeouts,
        report.peak_live,
        report.elapsed.as_secs_f64()
    );
    println!("answer->uuid_record p50 {p50:?} p99 {p99:?} max {max:?}");
    let held = |q| callrec_sim::load::quantile(&report.socket_held, q).unwrap_or_default();
    let link_events = switch.inbound_stats().events_sent as usize;
    println!(
        "follow {follow}: outbound socket held p50 {:?} p99 {:?}; events serialised for callrec per call {:.2} (socket {:.2} + link {:.2})",
        held(0.5),
        held(0.99),
        (report.socket_events + link_events) as f64 / report.placed.max(1) as f64,
        report.socket_events as f64 / report.placed.max(1) as f64,
        link_events as f64 / report.placed.max(1) as f64,
    );
    println!(
        "callrec RSS idle {idle_rss} KiB, peak {peak_rss} KiB with {live_at_peak} live calls: {:.1} KiB per live call",
        (peak_rss.saturating_sub(idle_rss)) as f64 / live_at_peak.max(1) as f64
    );
    println!(
        "callrec CPU {cpu:.2} s for {} calls: {:.3} ms per call",
        report.placed,
        cpu * 1000.0 / report.placed.max(1) as f64
    );
}
