//! The docker-compose lab, checked without a Docker engine (none on CI): the compose file parses
//! (`docker-compose config`, Debian's package, which `scripts/test` installs), every path it
//! builds from or mounts exists, its services agree with callrec's defaults and the dialplans
//! on every address and port, and the FreeSWITCH configuration in `lab/freeswitch/conf` is
//! well-formed, complete (every include resolves, every `$${var}` is set, the modules
//! load) and runs the project's `dialplans/public/` files unchanged.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use callrec::config::Config;
use quick_xml::events::Event;
use quick_xml::Reader;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn conf() -> PathBuf {
    root().join("lab/freeswitch/conf")
}

/// `docker-compose config`: the file as Compose understands it (paths made absolute), read
/// through the YAML loader docker-compose itself depends on.
fn compose() -> serde_json::Value {
    let out = Command::new("docker-compose")
        .arg("config")
        .current_dir(root())
        .output()
        .expect("docker-compose is installed (scripts/test installs Debian's docker-compose)");
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with yaml (a docker-compose dependency)");
    use std::io::Write;
    py.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let json = py.wait_with_output().unwrap();
    assert!(json.status.success());
    serde_json::from_slice(&json.stdout).unwrap()
}

fn service<'a>(c: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    c["services"]
        .get(name)
        .unwrap_or_else(|| panic!("compose has no service {name}"))
}

/// `(source, target)` of a service's volumes (short syntax, as `config` prints them).
fn mounts(s: &serde_json::Value) -> Vec<(String, String)> {
    s["volumes"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|m| match m {
                    serde_json::Value::String(t) => {
                        let mut p = t.split(':');
                        (
                            p.next().unwrap_or_default().to_string(),
                            p.next().unwrap_or_default().to_string(),
                        )
                    }
                    o => (
                        o["source"].as_str().unwrap_or_default().to_string(),
                        o["target"].as_str().unwrap_or_default().to_string(),
                    ),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every element of an XML file: (name, attributes). Panics when it is not well-formed.
fn elements(path: &Path) -> Vec<(String, HashMap<String, String>)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = Reader::from_str(&text);
    let mut out = vec![];
    loop {
        match r.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.unwrap_or_else(|err| panic!("{}: {err}", path.display()));
                        (
                            String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                            a.unescape_value().unwrap().into_owned(),
                        )
                    })
                    .collect();
                out.push((
                    String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                    attrs,
                ));
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("{}: not well-formed: {e}", path.display()),
        }
    }
    out
}

/// The files FreeSWITCH's preprocessor reads, from `freeswitch.xml` down: each include is a
/// glob relative to the including file's directory (switch_xml.c, `preprocess_glob`).
/// Every file FreeSWITCH reads for the lab's configuration.
fn included_files_of_conf() -> Vec<PathBuf> {
    let mut files = vec![];
    included_files(&conf().join("freeswitch.xml"), &mut files);
    files
}

fn included_files(file: &Path, out: &mut Vec<PathBuf>) {
    out.push(file.to_path_buf());
    for (name, attrs) in elements(file) {
        if name != "X-PRE-PROCESS" || attrs.get("cmd").map(String::as_str) != Some("include") {
            continue;
        }
        let pattern = &attrs["data"];
        let dir = file.parent().unwrap();
        let (sub, glob) = match pattern.rsplit_once('/') {
            Some((d, g)) => (dir.join(d), g.to_string()),
            None => (dir.to_path_buf(), pattern.clone()),
        };
        let mut matched: Vec<PathBuf> = std::fs::read_dir(&sub)
            .unwrap_or_else(|e| panic!("{}: include {pattern}: {e}", file.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && glob_match(&glob, &p.file_name().unwrap().to_string_lossy()))
            .collect();
        matched.sort();
        assert!(
            !matched.is_empty(),
            "{}: include {pattern} matches nothing",
            file.display()
        );
        for m in matched {
            included_files(&m, out);
        }
    }
}

/// `*.xml`-style patterns (one `*`), as the lab's includes use them.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((pre, post)) => {
            name.len() >= pre.len() + post.len() && name.starts_with(pre) && name.ends_with(post)
        }
        None => pattern == name,
    }
}

/// `$${name}` values set with `<X-PRE-PROCESS cmd="set" data="name=value"/>`.
fn preprocessor_vars(files: &[PathBuf]) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for f in files {
        for (name, attrs) in elements(f) {
            if name == "X-PRE-PROCESS" && attrs.get("cmd").map(String::as_str) == Some("set") {
                let (k, v) = attrs["data"].split_once('=').expect("name=value");
                vars.insert(k.to_string(), v.to_string());
            }
        }
    }
    vars
}

fn param(files: &[PathBuf], file_name: &str, name: &str) -> String {
    let f = files
        .iter()
        .find(|f| f.file_name().is_some_and(|n| n == file_name))
        .unwrap_or_else(|| panic!("{file_name} is included"));
    elements(f)
        .into_iter()
        .find(|(n, a)| n == "param" && a.get("name").map(String::as_str) == Some(name))
        .and_then(|(_, a)| a.get("value").cloned())
        .unwrap_or_else(|| panic!("{file_name}: no param {name}"))
}

fn expand(v: &str, vars: &HashMap<String, String>) -> String {
    let mut s = v.to_string();
    for (k, val) in vars {
        s = s.replace(&format!("$${{{k}}}"), val);
    }
    s
}

#[test]
fn the_compose_file_parses_and_everything_it_builds_from_or_mounts_exists() {
    let c = compose();
    let names: BTreeSet<&str> = c["services"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["freeswitch", "callrec", "receiver", "seed", "caller"])
    );
    for (name, s) in c["services"].as_object().unwrap() {
        if let Some(ctx) = s["build"]["context"].as_str() {
            let dockerfile = s["build"]["dockerfile"].as_str().unwrap_or("Dockerfile");
            assert!(
                Path::new(ctx).join(dockerfile).is_file(),
                "{name}: no {dockerfile} in {ctx}"
            );
        }
        for (src, dst) in mounts(s) {
            if src.starts_with('/') {
                assert!(
                    Path::new(&src).exists(),
                    "{name} mounts {src}, which does not exist"
                );
            } else {
                assert!(
                    c["volumes"].get(&src).is_some(),
                    "{name} mounts volume {src}, which is not declared"
                );
            }
            assert!(dst.starts_with('/'), "{name}: mount target {dst}");
        }
    }
}

#[test]
fn the_lab_agrees_with_callrecs_defaults_and_the_dialplans() {
    let c = compose();
    let d = Config::default();
    // callrec runs beside FreeSWITCH: in its network namespace, as the seed does.
    for name in ["callrec", "seed"] {
        assert_eq!(
            service(&c, name)["network_mode"].as_str(),
            Some("service:freeswitch"),
            "{name} shares FreeSWITCH's loopback"
        );
    }
    // The lab's config file parses and leaves every address at its default.
    let lab = Config::load(Some(&root().join("lab/callrec.toml"))).expect("lab/callrec.toml");
    assert_eq!(lab.listen, d.listen);
    assert_eq!(lab.api_listen, d.api_listen);
    assert_eq!(lab.freeswitch_esl, d.freeswitch_esl);
    assert_eq!(lab.freeswitch_password, d.freeswitch_password);
    assert_eq!(lab.continue_context, d.continue_context);
    // The dialplan's socket reaches callrec's listener: the drop-in file, included unchanged.
    let dialplan = std::fs::read_to_string(root().join("dialplans/callrec.xml")).unwrap();
    assert!(dialplan.contains(&format!("data=\"{} async full\"", d.listen)));
    // The event socket is where callrec's link goes, with its password.
    let mut files = vec![];
    included_files(&conf().join("freeswitch.xml"), &mut files);
    let vars = preprocessor_vars(&files);
    let esl = format!(
        "{}:{}",
        param(&files, "event_socket.conf.xml", "listen-ip"),
        param(&files, "event_socket.conf.xml", "listen-port")
    );
    assert_eq!(Some(esl), d.freeswitch_esl);
    assert_eq!(
        param(&files, "event_socket.conf.xml", "password"),
        d.freeswitch_password
    );
    // FreeSWITCH and callrec see the recordings at the same path, callrec's data_dir.
    let data_dir = "/var/lib/callrec";
    let cmd = strings(&service(&c, "callrec")["command"]);
    let at = cmd
        .iter()
        .position(|a| a == "--data-dir")
        .expect("--data-dir");
    assert_eq!(cmd[at + 1], data_dir);
    let shared = |name: &str| {
        mounts(service(&c, name))
            .into_iter()
            .find(|(_, dst)| dst == data_dir)
            .map(|(src, _)| src)
    };
    assert_eq!(shared("freeswitch"), Some("recordings".to_string()));
    assert_eq!(shared("callrec"), Some("recordings".to_string()));
    assert_eq!(shared("seed"), Some("recordings".to_string()));
    // The caller's scenario is well-formed and streams the tone its image makes.
    let uac = elements(&root().join("lab/caller/uac.xml"));
    let stream = uac
        .iter()
        .find_map(|(n, a)| {
            (n == "exec")
                .then(|| a.get("rtp_stream").cloned())
                .flatten()
        })
        .expect("the scenario streams audio");
    let tone = stream.split(',').next().unwrap().to_string();
    let image = std::fs::read_to_string(root().join("lab/caller/Dockerfile")).unwrap();
    assert!(
        image.contains(&format!("-t ul {tone} ")),
        "{tone} is made in the image"
    );
    // The caller dials the lab profile's port and a number the continuation context answers.
    let caller = strings(&service(&c, "caller")["command"]);
    let sip_port = expand(&param(&files, "sofia.conf.xml", "sip-port"), &vars);
    assert_eq!(caller[0], format!("freeswitch:{sip_port}"));
    let number = &caller[caller.iter().position(|a| a == "-s").unwrap() + 1];
    // The public context is a site's in the drop-in form: callrec.xml included first (after
    // the extension naming the account), then the lab's own routing, which answers the
    // caller's number; no continuation context.
    let public = elements(&conf().join("dialplan/public.xml"));
    let order: Vec<String> = public
        .iter()
        .filter_map(|(n, a)| match n.as_str() {
            "extension" => a.get("name").cloned(),
            "X-PRE-PROCESS" => a.get("data").cloned(),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        ["lab-account", "callrec/callrec.xml", "lab-tone", "unrouted"]
    );
    assert!(
        conf().join("dialplan/callrec/callrec.xml").is_file(),
        "the include reaches the repository's file"
    );
    let answers = public.iter().any(|(n, a)| {
        n == "condition"
            && a.get("expression").is_some_and(|e| {
                e.starts_with("^(9") && regex::Regex::new(e).unwrap().is_match(number)
            })
    });
    assert!(answers, "the lab's routing answers {number}");
    assert!(
        !included_files_of_conf().iter().any(|f| elements(f)
            .iter()
            .any(|(n, a)| n == "context" && a.get("name") == Some(&d.continue_context))),
        "the lab has no {} context",
        d.continue_context
    );
    assert_eq!(
        param(&files, "sofia.conf.xml", "context"),
        "public",
        "the lab profile's calls enter the public context"
    );
    // The seed talks to callrec's API and points the account at the receiver.
    let seed = std::fs::read_to_string(root().join("lab/seed/seed.sh")).unwrap();
    assert!(seed.contains(&format!("api=http://{}", d.api_listen)));
    let nginx = std::fs::read_to_string(root().join("lab/receiver/nginx.conf")).unwrap();
    let port = nginx
        .lines()
        .find_map(|l| l.trim().strip_prefix("listen "))
        .map(|p| p.trim_end_matches(';').to_string())
        .expect("nginx listen");
    assert!(seed.contains(&format!("\"url\":\"http://receiver:{port}/recordings/\"")));
    assert!(nginx.contains("dav_methods PUT;"));
}

#[test]
fn the_freeswitch_configuration_is_complete_and_runs_the_dialplans_unchanged() {
    let mut files = vec![];
    included_files(&conf().join("freeswitch.xml"), &mut files);
    // Every file under conf/ is well-formed, read or not.
    let mut all = vec![];
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "xml") {
                out.push(p);
            }
        }
    }
    walk(&conf(), &mut all);
    for f in &all {
        elements(f);
    }
    // Every `$${var}` used is set by the configuration or by FreeSWITCH at start-up.
    let vars = preprocessor_vars(&files);
    let builtin = ["local_ip_v4"];
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for part in text.split("$${").skip(1) {
            let name = part.split('}').next().unwrap();
            assert!(
                vars.contains_key(name) || builtin.contains(&name),
                "{}: $${{{name}}} is never set",
                f.display()
            );
        }
    }
    // The modules the issue names, no more, no fewer.
    let modules: BTreeSet<String> = elements(&conf().join("autoload_configs/modules.conf.xml"))
        .into_iter()
        .filter(|(n, _)| n == "load")
        .map(|(_, a)| a["module"].clone())
        .collect();
    let want: BTreeSet<String> = [
        "mod_console",
        "mod_logfile",
        "mod_commands",
        "mod_dptools",
        "mod_dialplan_xml",
        "mod_sofia",
        "mod_loopback",
        "mod_event_socket",
        "mod_native_file",
        "mod_sndfile",
        "mod_tone_stream",
        "mod_shout",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(modules, want);
    // The image builds exactly those.
    let built: BTreeSet<String> =
        std::fs::read_to_string(root().join("lab/freeswitch/modules.conf"))
            .unwrap()
            .lines()
            .filter_map(|l| l.trim().rsplit('/').next().map(String::from))
            .filter(|m| !m.is_empty())
            .collect();
    assert_eq!(built, want);
    // Each module that needs configuration has it.
    for needs in [
        "modules.conf.xml",
        "switch.conf.xml",
        "console.conf.xml",
        "logfile.conf.xml",
        "event_socket.conf.xml",
        "sofia.conf.xml",
    ] {
        assert!(
            files
                .iter()
                .any(|f| f.file_name().is_some_and(|n| n == needs)),
            "{needs} is loaded"
        );
    }
    // The project's dialplans, unchanged: dialplan/callrec is the repository's dialplans/, and
    // its drop-in callrec.xml is read into the public context.
    let link = conf().join("dialplan/callrec");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../../../../dialplans"),
        "the same relative link works in the repository and as /dialplans in the container"
    );
    assert_eq!(
        link.canonicalize().unwrap(),
        root().join("dialplans").canonicalize().unwrap()
    );
    let read_via_link = link.join("callrec.xml");
    assert!(
        files.iter().any(|f| f == &read_via_link),
        "{} is included",
        read_via_link.display()
    );
}
