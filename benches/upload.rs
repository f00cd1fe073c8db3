//! Upload benchmark (a bench binary): one large recording PUT to a real nginx (WebDAV) over
//! loopback by the `callrec serve` process, against `curl -T` of the same file to the same
//! server in the same run; and callrec's peak RSS meanwhile. See BENCHMARKS.md.
//!
//! `cargo bench --bench upload -- [--mib 1024] [--runs 3]`

mod common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use callrec::store::Store;
use callrec::uploader::spool;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mib = arg("--mib", 1024);
    let runs = arg("--runs", 3);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // nginx with WebDAV PUT on a free port.
    let www = root.join("www");
    let server = common::nginx(root, &www);
    let port = server.port;
    // The recording: `mib` MiB of non-repeating bytes.
    let data = root.join("data");
    let rec_dir = data.join("recordings/acc/2026/11/23");
    std::fs::create_dir_all(&rec_dir).unwrap();
    let file = rec_dir.join("big.wav");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..mib {
            for chunk in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            f.write_all(&block).unwrap();
        }
    }
    let size = std::fs::metadata(&file).unwrap().len();
    let mbps = |d: Duration| size as f64 / d.as_secs_f64() / 1e6;

    let mut curl_times = Vec::new();
    let mut callrec_times = Vec::new();
    let mut peak_rss = 0u64;
    for run in 0..runs {
        // curl -T
        let t = Instant::now();
        let ok = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-f", "-T"])
            .arg(&file)
            .arg(format!("http://127.0.0.1:{port}/curl/run{run}.wav"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "curl upload failed");
        curl_times.push(t.elapsed());

        // callrec: adopt the file with a URL, start serve, wait for "delivered".
        let data_run = root.join(format!("data{run}"));
        std::fs::create_dir_all(&data_run).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_callrec"))
            .args(["recordings", "adopt"])
            .arg(&file)
            .args([
                "--url",
                &format!("http://127.0.0.1:{port}/callrec/run{run}/"),
                "--data-dir",
            ])
            .arg(&data_run)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = root.join(format!("callrec{run}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{}\"\napi_listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\nkeep_local_after_upload = true\n",
                common::free_port(),
                common::free_port(),
                data_run.display()
            ),
        )
        .unwrap();
        let store = Store::open(&data_run).unwrap();
        let id = spool::list(&store, &Default::default()).await.unwrap()[0]
            .meta
            .recording_id
            .clone();
        let t = Instant::now();
        let mut child = common::serve(&config);
        loop {
            peak_rss = peak_rss.max(common::rss_kib(child.id()));
            let item = spool::get(&store, &id).await.unwrap().unwrap();
            if item.state == "delivered" {
                break;
            }
            assert_ne!(item.state, "failed", "{:?}", item.deliveries);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        callrec_times.push(t.elapsed());
        let _ = child.kill();
        let _ = child.wait();
        let sent =
            std::fs::metadata(www.join(format!("callrec/run{run}/call_recording_unknown.wav")))
                .map(|m| m.len())
                .unwrap_or(0);
        assert_eq!(sent, size, "the whole file arrived");
    }
    drop(server);
    curl_times.sort();
    callrec_times.sort();
    let med = |v: &Vec<Duration>| v[v.len() / 2];
    println!("file {size} bytes ({mib} MiB), {runs} runs each, median:");
    println!(
        "curl -T   {:>8.1} MB/s  ({:?})",
        mbps(med(&curl_times)),
        med(&curl_times)
    );
    println!(
        "callrec   {:>8.1} MB/s  ({:?}, process start to delivered)",
        mbps(med(&callrec_times)),
        med(&callrec_times)
    );
    println!(
        "callrec / curl = {:.2}",
        med(&curl_times).as_secs_f64() / med(&callrec_times).as_secs_f64()
    );
    println!("callrec peak RSS during uploads: {} KiB", peak_rss);
}
