//! The shipped dialplans: every XML file under `dialplans/` is well-formed, and every `socket`
//! action reaches callrec's default listener in the mode callrec needs (`async full`). A call
//! callrec does not take is still routed: a drop-in extension (`continue="true"`) guards itself
//! with `callrec_passed` and presets `socket_resume=true`, so the context's own extensions
//! follow; a legacy one has a fallback action after `socket`.

use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use quick_xml::Reader;

fn xml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            xml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "xml") {
            out.push(p);
        }
    }
}

/// `(application, data)` of every `<action>` in document order, per extension, with whether
/// the extension has `continue="true"`.
fn extensions(path: &Path) -> Vec<(bool, Vec<(String, String)>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut r = Reader::from_str(&text);
    let mut out: Vec<(bool, Vec<(String, String)>)> = vec![];
    let mut elements = 0;
    loop {
        match r.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let attr = |k: &str| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == k.as_bytes())
                        .map(|a| a.unescape_value().unwrap().into_owned())
                        .unwrap_or_default()
                };
                if name == "extension" {
                    out.push((attr("continue") == "true", vec![]));
                }
                if name == "action" {
                    out.last_mut()
                        .unwrap_or_else(|| {
                            panic!("{}: action outside an extension", path.display())
                        })
                        .1
                        .push((attr("application"), attr("data")));
                }
                elements += 1;
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("{}: not well-formed: {e}", path.display()),
        }
    }
    assert!(elements > 0, "{}: empty", path.display());
    out
}

#[test]
fn every_dialplan_parses_and_reaches_callrec_with_a_fallback() {
    let mut files = vec![];
    xml_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplans"),
        &mut files,
    );
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let defaults = callrec::config::Config::default();
    let mut sockets = 0;
    for f in &files {
        for (cont, ext) in extensions(f) {
            for (i, (app, data)) in ext.iter().enumerate() {
                if app != "socket" {
                    continue;
                }
                sockets += 1;
                assert_eq!(
                    data,
                    &format!("{} async full", defaults.listen),
                    "{}: socket must reach callrec's listener with async full",
                    f.display()
                );
                let before = &ext[..i];
                let set = |kv: &str| before.iter().any(|(a, d)| a == "set" && d == kv);
                if cont {
                    assert!(
                        set("callrec_passed=true") && set("socket_resume=true"),
                        "{}: a drop-in extension sets its guard and socket_resume before socket",
                        f.display()
                    );
                    assert!(
                        !ext[i + 1..].iter().any(|(a, _)| a == "transfer"),
                        "{}: a drop-in extension lets the context's own extensions route",
                        f.display()
                    );
                } else {
                    assert!(
                        ext[i + 1..]
                            .iter()
                            .any(|(a, _)| a == "transfer" || a == "bridge"),
                        "{}: a fallback must route the call when callrec does not take it",
                        f.display()
                    );
                }
            }
        }
    }
    assert!(sockets >= 3, "socket actions found: {sockets}");
    let cont = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplans/callrec-continue.xml"),
    )
    .unwrap();
    assert!(
        cont.contains(&format!("<context name=\"{}\">", defaults.continue_context)),
        "the continuation context is callrec's default"
    );
}
