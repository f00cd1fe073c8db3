//! `callrec-lab`: places simulated FreeSWITCH calls against a running `callrec serve` and
//! prints what happened. Calls run the drop-in extension (`dialplans/callrec.xml`) in context
//! `public`, as the docker-compose lab's FreeSWITCH does. Usage:
//!
//! ```text
//! callrec-lab [--target 127.0.0.1:8084] [--calls 10] [--rate 5] [--hold-ms 2000] [--talk-ms 3000] [--account acc-1]
//! callrec-lab --scenario normal|caller-hangup|never-answered|time-limit|controller-disconnects|fs-kills-mid-command
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
    let mut scenario = None;
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
            // The drop-in extension takes the account from `domain_name`, as the docker lab's
            // first extension sets it.
            "--account" => cfg.variables = vec![("domain_name".into(), value.clone())],
            "--scenario" => {
                scenario = Some(
                    callrec_sim::scenario::Scenario::parse(value)
                        .unwrap_or_else(|| usage(&format!("unknown scenario {value}"))),
                )
            }
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| usage(&e.to_string()));
    if let Some(sc) = scenario {
        let mut spec = callrec_sim::CallSpec::new("15551234567", "1000").caller_name("Lab");
        // A scripted fault is played on the socket itself (no dialplan around it), so the
        // account is named directly.
        for (_, v) in &cfg.variables {
            spec = spec.var("callrec_account_id", v);
        }
        let talk = cfg.talk;
        match rt.block_on(callrec_sim::scenario::play(
            cfg.target, spec, sc, talk, false,
        )) {
            Ok(r) => {
                println!("scenario {}: commands from the controller:", sc.name());
                for c in &r.commands {
                    println!("  {}", c.line);
                }
                println!(
                    "recordings: {:?}",
                    r.recordings
                        .iter()
                        .map(|x| (&x.path, x.ms, &x.cause))
                        .collect::<Vec<_>>()
                );
                println!("controller said exit: {}", r.app_exited);
            }
            Err(e) => usage(&format!("cannot reach {}: {e}", cfg.target)),
        }
        return;
    }
    cfg.dialplan = Some(Arc::new(lab_dialplan(cfg.target)));
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

/// The lab's `public` context in the drop-in form: the project's `dialplans/callrec.xml` first
/// (pointed at `--target`), then a routing extension that leaves the call to this program, which
/// answers and hangs up as the caller and callee.
fn lab_dialplan(target: std::net::SocketAddr) -> callrec_sim::Dialplan {
    const DROP_IN: &str = include_str!("../../../dialplans/callrec.xml");
    const ROUTING: &str = r#"<include><extension name="lab-caller"><condition field="destination_number" expression="^.+$"><action application="park"/></condition></extension></include>"#;
    let first = DROP_IN.replace("127.0.0.1:8084", &target.to_string());
    callrec_sim::Dialplan::new()
        .include("public", &first)
        .and_then(|d| d.include("public", ROUTING))
        .unwrap_or_else(|e| usage(&format!("the lab's dialplan: {e}")))
}

fn usage(why: &str) -> ! {
    eprintln!("callrec-lab: {why}\nusage: callrec-lab [--target ADDR] [--calls N] [--rate PER_S] [--hold-ms MS] [--talk-ms MS] [--account ID] [--scenario NAME]");
    std::process::exit(2)
}
