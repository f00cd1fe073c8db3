//! FreeSWITCH's XML dialplan as `mod_dialplan_xml` reads and hunts it, for the parts callrec's
//! dialplans and their tests use: contexts, extensions with `continue`, conditions on a caller
//! profile field or an expanded `${variable}` (with `break`, `anti-action`s), `$1`… captures put
//! into action data at hunt time, and `$${global}` preprocessor variables put in at load time.
//!
//! Invariants (from `mod_dialplan_xml.c`, `dialplan_hunt` and `parse_exten`):
//! - hunting walks a context's extensions in file order and collects the actions of every
//!   extension that matches, stopping after the first match whose `continue` is not `true`;
//!   every condition is evaluated while hunting, before any action runs (so a variable an
//!   earlier extension's `set` gives is not seen by a later extension's condition in the same
//!   hunt);
//! - an extension matches when its last evaluated condition passed; a failing condition adds its
//!   anti-actions and, unless `break="never"`, ends the extension; a passing one adds its
//!   actions and ends it when `break="on-true"`;
//! - `${…}` in action data is left for execution time (the channel expands it then).
//!
//! Pure: no sockets, no channel. The channel (`call/route.rs`) executes what a hunt returns.

use regex::Regex;

/// One `<action>` or `<anti-action>`: an application and its argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialplanAction {
    pub app: String,
    pub data: String,
}

#[derive(Debug, Clone)]
struct Condition {
    /// `None`: a condition without a field, which always passes.
    field: Option<String>,
    expression: Regex,
    brk: Break,
    actions: Vec<DialplanAction>,
    anti_actions: Vec<DialplanAction>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Break {
    OnFalse,
    OnTrue,
    Always,
    Never,
}

#[derive(Debug, Clone)]
struct Extension {
    name: String,
    cont: bool,
    conditions: Vec<Condition>,
}

/// A set of contexts, built from dialplan XML files.
#[derive(Debug, Clone, Default)]
pub struct Dialplan {
    contexts: Vec<(String, Vec<Extension>)>,
    globals: Vec<(String, String)>,
}

impl Dialplan {
    pub fn new() -> Dialplan {
        Dialplan::default()
    }

    /// A preprocessor variable (`vars.xml`'s `<X-PRE-PROCESS cmd="set" data="name=value"/>`),
    /// put into files included after it wherever they say `$${name}`.
    pub fn global(mut self, name: &str, value: &str) -> Dialplan {
        self.globals.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds one file's content. Extensions directly under `<include>` go into `context` (a file
    /// in `conf/dialplan/<context>/`); a `<context name="…">` element says its own context.
    /// Later files' extensions come after earlier ones, as FreeSWITCH includes files in name
    /// order.
    pub fn include(mut self, context: &str, xml: &str) -> Result<Dialplan, String> {
        let text = self.preprocess(xml);
        let doc = parse_xml(&text)?;
        self.take_node(context, &doc)?;
        Ok(self)
    }

    /// Reads a dialplan file as FreeSWITCH's preprocessor does (`switch_xml.c`): every
    /// `<X-PRE-PROCESS cmd="include" data="…"/>` is replaced by the files it names (a path
    /// relative to the including file's directory, one `*` allowed in the file name, files in
    /// name order), without their `<include>` wrapper; `cmd="set" data="name=value"` defines a
    /// `$${name}`. `edit` rewrites the whole text before it is parsed (a test pointing
    /// `socket` at its own listener). Extensions outside a `<context>` go into `context`.
    pub fn from_file(
        path: &std::path::Path,
        context: &str,
        edit: impl Fn(String) -> String,
    ) -> Result<Dialplan, String> {
        let mut dp = Dialplan::new();
        let text = dp.expand_file(path, 0)?;
        let text = edit(text);
        dp.include(context, &text)
    }

    fn expand_file(&mut self, path: &std::path::Path, depth: usize) -> Result<String, String> {
        if depth > 20 {
            return Err(format!("{}: includes nest too deep", path.display()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let mut out = String::with_capacity(text.len());
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with("<?xml") || t == "<include>" || t == "</include>" {
                continue;
            }
            let Some(rest) = t.strip_prefix("<X-PRE-PROCESS") else {
                out.push_str(line);
                out.push('\n');
                continue;
            };
            let attr = |name: &str| {
                let key = format!("{name}=\"");
                rest.find(&key).and_then(|i| {
                    let v = &rest[i + key.len()..];
                    v.find('"').map(|j| v[..j].to_string())
                })
            };
            match (attr("cmd").as_deref(), attr("data")) {
                (Some("include"), Some(pattern)) => {
                    let (sub, glob) = match pattern.rsplit_once('/') {
                        Some((d, g)) => (dir.join(d), g.to_string()),
                        None => (dir.to_path_buf(), pattern.clone()),
                    };
                    let mut files: Vec<_> = std::fs::read_dir(&sub)
                        .map_err(|e| format!("{}: include {pattern}: {e}", path.display()))?
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| {
                            p.is_file()
                                && p.file_name()
                                    .is_some_and(|n| glob_match(&glob, &n.to_string_lossy()))
                        })
                        .collect();
                    files.sort();
                    for f in files {
                        out.push_str(&self.expand_file(&f, depth + 1)?);
                    }
                }
                (Some("set"), Some(kv)) => {
                    if let Some((k, v)) = kv.split_once('=') {
                        self.globals.push((k.to_string(), v.to_string()));
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn preprocess(&self, xml: &str) -> String {
        let mut out = xml.to_string();
        for (k, v) in &self.globals {
            out = out.replace(&format!("$${{{k}}}"), v);
        }
        out
    }

    fn take_node(&mut self, context: &str, node: &Node) -> Result<(), String> {
        for child in &node.children {
            match child.name.as_str() {
                "include" | "section" | "document" => self.take_node(context, child)?,
                "context" => {
                    let name = child
                        .attr("name")
                        .ok_or("a <context> without a name")?
                        .to_string();
                    self.take_node(&name, child)?;
                }
                "extension" => {
                    let ext = extension(child)?;
                    self.context_mut(context).push(ext);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn context_mut(&mut self, name: &str) -> &mut Vec<Extension> {
        if let Some(i) = self.contexts.iter().position(|(n, _)| n == name) {
            return &mut self.contexts[i].1;
        }
        self.contexts.push((name.to_string(), Vec::new()));
        let last = self.contexts.len() - 1;
        &mut self.contexts[last].1
    }

    /// Whether the context exists (FreeSWITCH hangs a call up with NO_ROUTE_DESTINATION when
    /// it is routed into one that does not).
    pub fn has_context(&self, name: &str) -> bool {
        self.contexts.iter().any(|(n, _)| n == name)
    }

    /// Hunts `context`: the actions to run, with the names of the extensions that matched.
    /// `field` gives a condition's field value (a caller-profile field by name, or the field
    /// with its `${…}` expanded). `None` when the context does not exist.
    pub fn hunt(
        &self,
        context: &str,
        field: &dyn Fn(&str) -> String,
    ) -> Option<(Vec<String>, Vec<DialplanAction>)> {
        let (_, extensions) = self.contexts.iter().find(|(n, _)| n == context)?;
        let mut matched = Vec::new();
        let mut actions = Vec::new();
        for ext in extensions {
            let mut proceed = false;
            let mut mine = Vec::new();
            for c in &ext.conditions {
                let captures = match &c.field {
                    None => Some(Vec::new()),
                    Some(f) => {
                        let value = field(f);
                        c.expression.captures(&value).map(|caps| {
                            caps.iter()
                                .map(|m| m.map(|m| m.as_str().to_string()).unwrap_or_default())
                                .collect::<Vec<_>>()
                        })
                    }
                };
                match captures {
                    Some(caps) => {
                        proceed = true;
                        mine.extend(c.actions.iter().map(|a| DialplanAction {
                            app: a.app.clone(),
                            data: substitute(&a.data, &caps),
                        }));
                        if matches!(c.brk, Break::OnTrue | Break::Always) {
                            break;
                        }
                    }
                    None => {
                        proceed = false;
                        mine.extend(c.anti_actions.iter().cloned());
                        if c.brk != Break::Never {
                            break;
                        }
                    }
                }
            }
            actions.extend(mine);
            if proceed {
                matched.push(ext.name.clone());
                if !ext.cont {
                    break;
                }
            }
        }
        Some((matched, actions))
    }
}

/// A file name against a pattern with at most one `*`.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((a, b)) => name.len() >= a.len() + b.len() && name.starts_with(a) && name.ends_with(b),
    }
}

/// `$1`…`$9` from the condition's captures (`$0` is the whole match).
fn substitute(data: &str, caps: &[String]) -> String {
    if !data.contains('$') {
        return data.to_string();
    }
    let mut out = String::with_capacity(data.len());
    let b = data.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() && b[i + 1].is_ascii_digit() {
            let n = (b[i + 1] - b'0') as usize;
            out.push_str(caps.get(n).map(String::as_str).unwrap_or(""));
            i += 2;
            continue;
        }
        let ch = data[i..].chars().next().unwrap_or('$');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn extension(node: &Node) -> Result<Extension, String> {
    let name = node.attr("name").unwrap_or("").to_string();
    let cont = node.attr("continue").is_some_and(|v| v == "true");
    let mut conditions = Vec::new();
    for c in node.children.iter().filter(|c| c.name == "condition") {
        let field = c.attr("field").map(str::to_string);
        let expr = c.attr("expression").unwrap_or("");
        let expression =
            Regex::new(expr).map_err(|e| format!("extension {name}: expression {expr:?}: {e}"))?;
        let brk = match c.attr("break").unwrap_or("on-false") {
            "on-true" => Break::OnTrue,
            "always" => Break::Always,
            "never" => Break::Never,
            _ => Break::OnFalse,
        };
        let act = |tag: &str| {
            c.children
                .iter()
                .filter(|a| a.name == tag)
                .map(|a| DialplanAction {
                    app: a.attr("application").unwrap_or("").to_string(),
                    data: a.attr("data").unwrap_or("").to_string(),
                })
                .collect::<Vec<_>>()
        };
        conditions.push(Condition {
            field: if field.is_none() && c.attr("expression").is_none() {
                None
            } else {
                field.or(Some(String::new()))
            },
            expression,
            brk,
            actions: act("action"),
            anti_actions: act("anti-action"),
        });
    }
    Ok(Extension {
        name,
        cont,
        conditions,
    })
}

/// An element: its name, attributes and child elements (text is not used by dialplans).
#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

impl Node {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_xml(text: &str) -> Result<Node, String> {
    use quick_xml::events::{BytesStart, Event};
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack = vec![Node::default()];
    let element = |e: &BytesStart| -> Result<Node, String> {
        let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
        let mut attrs = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|e| format!("attribute: {e}"))?;
            let k = String::from_utf8_lossy(a.key.as_ref()).into_owned();
            let v = a
                .unescape_value()
                .map_err(|e| format!("attribute {k}: {e}"))?
                .into_owned();
            attrs.push((k, v));
        }
        Ok(Node {
            name,
            attrs,
            children: Vec::new(),
        })
    };
    loop {
        match reader.read_event() {
            Err(e) => {
                return Err(format!(
                    "XML error at byte {}: {e}",
                    reader.buffer_position()
                ))
            }
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => stack.push(element(&e)?),
            Ok(Event::Empty(e)) => {
                let n = element(&e)?;
                if let Some(top) = stack.last_mut() {
                    top.children.push(n);
                }
            }
            Ok(Event::End(_)) => {
                let n = stack.pop().ok_or("unbalanced XML")?;
                match stack.last_mut() {
                    Some(top) => top.children.push(n),
                    None => return Err("unbalanced XML".into()),
                }
            }
            Ok(_) => {}
        }
    }
    if stack.len() != 1 {
        return Err("XML ends inside an element".into());
    }
    stack.pop().ok_or_else(|| "empty XML".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"<include>
      <!-- a comment -->
      <extension name="guarded" continue="true">
        <condition field="${seen}" expression="^$"/>
        <condition field="destination_number" expression="^(.+)$">
          <action application="set" data="seen=true"/>
          <action application="log" data="first $1"/>
        </condition>
      </extension>
      <extension name="users">
        <condition field="destination_number" expression="^(1[0-9]{3})$">
          <action application="bridge" data="user/$1@$${domain}"/>
          <anti-action application="log" data="not a user"/>
        </condition>
      </extension>
      <extension name="never-reached">
        <condition field="destination_number" expression="^1001$">
          <action application="hangup"/>
        </condition>
      </extension>
    </include>"#;

    fn fields<'a>(dest: &'a str, seen: &'a str) -> impl Fn(&str) -> String + 'a {
        move |f: &str| match f {
            "destination_number" => dest.to_string(),
            "${seen}" => seen.to_string(),
            _ => String::new(),
        }
    }

    #[test]
    fn hunting_collects_continued_extensions_and_stops_at_the_first_final_match() {
        let dp = Dialplan::new()
            .global("domain", "example.org")
            .include("default", FILE)
            .unwrap();
        let (matched, actions) = dp.hunt("default", &fields("1001", "")).unwrap();
        assert_eq!(matched, ["guarded", "users"]);
        let apps: Vec<_> = actions
            .iter()
            .map(|a| format!("{} {}", a.app, a.data))
            .collect();
        assert_eq!(
            apps,
            [
                "set seen=true",
                "log first 1001",
                "bridge user/1001@example.org"
            ]
        );
    }

    #[test]
    fn a_guard_variable_set_before_the_hunt_skips_its_extension() {
        let dp = Dialplan::new().include("default", FILE).unwrap();
        let (matched, actions) = dp.hunt("default", &fields("1002", "true")).unwrap();
        assert_eq!(matched, ["users"]);
        assert_eq!(actions.len(), 1);
    }

    #[test]
    fn a_failing_condition_adds_its_anti_actions() {
        let dp = Dialplan::new().include("default", FILE).unwrap();
        let (matched, actions) = dp.hunt("default", &fields("5000", "true")).unwrap();
        assert!(matched.is_empty());
        assert_eq!(actions[0].data, "not a user");
    }

    #[test]
    fn contexts_named_in_the_file_and_unknown_contexts() {
        let dp = Dialplan::new()
            .include(
                "ignored",
                r#"<include><context name="other"><extension name="x"><condition><action application="answer"/></condition></extension></context></include>"#,
            )
            .unwrap();
        assert!(dp.has_context("other"));
        assert!(!dp.has_context("ignored"));
        assert!(dp.hunt("nowhere", &|_| String::new()).is_none());
        assert_eq!(dp.hunt("other", &|_| String::new()).unwrap().1.len(), 1);
    }

    #[test]
    fn broken_xml_is_an_error_not_a_panic() {
        assert!(Dialplan::new()
            .include("c", "<include><extension>")
            .is_err());
        assert!(Dialplan::new()
            .include("c", r#"<include><extension name="x"><condition field="a" expression="("/></extension></include>"#)
            .is_err());
    }
}
