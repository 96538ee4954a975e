//! Renders the kustomizations of `deploy/` the way `kubectl apply -k` would, for the
//! deployment tests: no kustomize binary can be installed from the registries these machines
//! reach. Only what our kustomizations use is implemented (`resources`, `configMapGenerator`,
//! `images`, JSON 6902 `patches`); any other key is an error, so a kustomization cannot grow a
//! feature this renderer would silently skip.

use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use serde_yaml::{Mapping, Value};

const KNOWN_KEYS: [&str; 6] = [
    "apiVersion",
    "kind",
    "resources",
    "configMapGenerator",
    "images",
    "patches",
];

/// The resources of the kustomization in `dir`, in order.
pub fn render(dir: &Path) -> anyhow::Result<Vec<Value>> {
    let file = dir.join("kustomization.yaml");
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let k: Mapping = serde_yaml::from_str(&text).with_context(|| file.display().to_string())?;
    for key in k.keys() {
        let key = key.as_str().unwrap_or_default();
        if !KNOWN_KEYS.contains(&key) {
            bail!(
                "{}: `{key}` is not supported by this renderer",
                file.display()
            );
        }
    }
    let mut out = Vec::new();
    for r in seq(&k, "resources") {
        let path = dir.join(r.as_str().context("resource entry")?);
        if path.is_dir() {
            out.extend(render(&path)?);
        } else {
            out.extend(documents(&path)?);
        }
    }
    for g in seq(&k, "configMapGenerator") {
        let (cm, hashed) = config_map(dir, g)?;
        if hashed {
            rename_config_map(&mut out, &cm)?;
        }
        out.push(cm);
    }
    for image in seq(&k, "images") {
        set_image(&mut out, image)?;
    }
    for p in seq(&k, "patches") {
        patch(&mut out, p).with_context(|| format!("{}: patch", file.display()))?;
    }
    Ok(out)
}

/// Every YAML document of a file.
pub fn documents(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = <Value as serde::Deserialize>::deserialize(doc)
            .with_context(|| format!("parsing {}", path.display()))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

fn seq<'a>(m: &'a Mapping, key: &str) -> &'a [Value] {
    m.get(key)
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

/// A generated ConfigMap, and whether its name got a content hash (kustomize's default).
fn config_map(dir: &Path, g: &Value) -> anyhow::Result<(Value, bool)> {
    let name = g["name"].as_str().context("configMapGenerator name")?;
    let mut data = Mapping::new();
    for f in g["files"]
        .as_sequence()
        .context("configMapGenerator files")?
    {
        let f = f.as_str().context("file name")?;
        let content = std::fs::read_to_string(dir.join(f))?;
        let key = Path::new(f)
            .file_name()
            .and_then(|n| n.to_str())
            .context("file name")?;
        data.insert(key.into(), content.into());
    }
    let hashed = g["options"]["disableNameSuffixHash"].as_bool() != Some(true);
    let name = if hashed {
        // Not kustomize's hash, but like it a function of the content.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in serde_yaml::to_string(&data)?.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{name}-{:010x}", h & 0xff_ffff_ffff)
    } else {
        name.to_owned()
    };
    let mut meta = Mapping::new();
    meta.insert("name".into(), name.into());
    if let Some(ns) = g["namespace"].as_str() {
        meta.insert("namespace".into(), ns.into());
    }
    let mut cm = Mapping::new();
    cm.insert("apiVersion".into(), "v1".into());
    cm.insert("kind".into(), "ConfigMap".into());
    cm.insert("metadata".into(), meta.into());
    cm.insert("data".into(), data.into());
    Ok((cm.into(), hashed))
}

/// Points pod volumes at the hashed name of a generated ConfigMap, as kustomize does.
fn rename_config_map(resources: &mut [Value], cm: &Value) -> anyhow::Result<()> {
    let hashed = cm["metadata"]["name"].as_str().context("name")?;
    let (base, _) = hashed.rsplit_once('-').context("hashed name")?;
    for r in resources {
        let Some(volumes) = r
            .get_mut("spec")
            .and_then(|s| s.get_mut("template"))
            .and_then(|t| t.get_mut("spec"))
            .and_then(|s| s.get_mut("volumes"))
            .and_then(Value::as_sequence_mut)
        else {
            continue;
        };
        for v in volumes {
            if let Some(name) = v.get_mut("configMap").and_then(|c| c.get_mut("name"))
                && name.as_str() == Some(base)
            {
                *name = hashed.into();
            }
        }
    }
    Ok(())
}

/// The pod templates' containers.
pub fn containers(resource: &Value) -> Vec<&Value> {
    let spec = &resource["spec"]["template"]["spec"];
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec[*k].as_sequence())
        .flatten()
        .collect()
}

fn set_image(resources: &mut [Value], image: &Value) -> anyhow::Result<()> {
    let name = image["name"].as_str().context("images: name")?;
    let new_name = image["newName"].as_str().unwrap_or(name);
    let new = match image["newTag"].as_str() {
        Some(tag) => format!("{new_name}:{tag}"),
        None => new_name.to_owned(),
    };
    for r in resources {
        for key in ["initContainers", "containers"] {
            let Some(list) = r
                .get_mut("spec")
                .and_then(|s| s.get_mut("template"))
                .and_then(|t| t.get_mut("spec"))
                .and_then(|s| s.get_mut(key))
                .and_then(Value::as_sequence_mut)
            else {
                continue;
            };
            for c in list {
                let Some(img) = c.get_mut("image") else {
                    continue;
                };
                let current = img.as_str().unwrap_or_default();
                let bare = current.split(['@', ':']).next().unwrap_or_default();
                if bare == name {
                    *img = new.clone().into();
                }
            }
        }
    }
    Ok(())
}

/// Applies one `patches` entry (a target and a JSON 6902 patch) to the resources it targets;
/// a target that matches nothing is an error.
fn patch(resources: &mut [Value], p: &Value) -> anyhow::Result<()> {
    let kind = p["target"]["kind"].as_str().context("target kind")?;
    let name = p["target"]["name"].as_str().context("target name")?;
    let ops: Vec<Value> =
        serde_yaml::from_str(p["patch"].as_str().context("inline JSON 6902 patch")?)?;
    let mut matched = 0;
    for r in resources.iter_mut() {
        if r["kind"].as_str() == Some(kind) && r["metadata"]["name"].as_str() == Some(name) {
            matched += 1;
            for op in &ops {
                json_patch(r, op)?;
            }
        }
    }
    if matched == 0 {
        bail!("patch target {kind}/{name} matches no resource");
    }
    Ok(())
}

/// One RFC 6902 operation (`add`, `replace`, `remove`), with RFC 6901 paths.
pub fn json_patch(doc: &mut Value, op: &Value) -> anyhow::Result<()> {
    let verb = op["op"].as_str().context("op")?;
    let path = op["path"].as_str().context("path")?;
    let tokens: Vec<String> = path
        .strip_prefix('/')
        .with_context(|| format!("path {path} does not start with /"))?
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (last, parents) = tokens.split_last().context("empty path")?;
    let mut at = &mut *doc;
    for t in parents {
        at = match at {
            Value::Mapping(m) => m
                .get_mut(t.as_str())
                .ok_or_else(|| anyhow!("{path}: no `{t}`"))?,
            Value::Sequence(s) => {
                let i: usize = t.parse().with_context(|| format!("{path}: index {t}"))?;
                s.get_mut(i)
                    .ok_or_else(|| anyhow!("{path}: no element {i}"))?
            }
            _ => bail!("{path}: `{t}` is inside a scalar"),
        };
    }
    let value = || op.get("value").cloned().context("value");
    match (verb, at) {
        ("add" | "replace", Value::Mapping(m)) => {
            if verb == "replace" && !m.contains_key(last.as_str()) {
                bail!("{path}: nothing to replace");
            }
            m.insert(last.as_str().into(), value()?);
        }
        ("remove", Value::Mapping(m)) => {
            m.remove(last.as_str())
                .ok_or_else(|| anyhow!("{path}: nothing to remove"))?;
        }
        (_, Value::Sequence(s)) => {
            let i = if last == "-" {
                s.len()
            } else {
                last.parse()
                    .with_context(|| format!("{path}: index {last}"))?
            };
            match verb {
                "add" if i <= s.len() => s.insert(i, value()?),
                "replace" if i < s.len() => s[i] = value()?,
                "remove" if i < s.len() => {
                    s.remove(i);
                }
                _ => bail!("{path}: cannot {verb} element {i} of {}", s.len()),
            }
        }
        _ => bail!("{path}: cannot {verb} here"),
    }
    Ok(())
}

/// The resources as one multi-document YAML stream (what `kubectl kustomize` prints).
pub fn to_yaml(resources: &[Value]) -> anyhow::Result<String> {
    let mut out = String::new();
    for r in resources {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(r)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
    }

    #[test]
    fn json_patch_adds_replaces_and_removes_in_maps_and_lists() {
        let mut doc = yaml("a: {b: [1, 2, 3]}\nc: x");
        for op in [
            "{op: replace, path: /a/b/1, value: 20}",
            "{op: add, path: /a/b/-, value: 4}",
            "{op: remove, path: /a/b/0}",
            "{op: add, path: /d, value: {e: 1}}",
            "{op: replace, path: /c, value: y}",
        ] {
            json_patch(&mut doc, &yaml(op)).unwrap_or_else(|e| panic!("{op}: {e}"));
        }
        assert_eq!(doc, yaml("a: {b: [20, 3, 4]}\nc: y\nd: {e: 1}"));
    }

    #[test]
    fn json_patch_refuses_what_is_not_there() {
        let mut doc = yaml("a: [1]");
        for op in [
            "{op: replace, path: /b, value: 1}",
            "{op: remove, path: /a/3}",
            "{op: add, path: /x/y, value: 1}",
        ] {
            assert!(json_patch(&mut doc, &yaml(op)).is_err(), "{op}");
        }
    }
}
