//! Flow events as JSON lines, written directly: byte for byte what serde_json makes of a
//! [`FlowEvent`] (the tests hold the two together), at a fraction of the cost. `analyze` writes
//! one event for every few dozen packets, and serde's flattened structs go through a map
//! serializer that escapes every key and formats every address through `fmt`: that was a
//! quarter of its time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::event::{Attribution, FlowEvent, Party};

/// `v4` in dotted decimal.
fn dotted(out: &mut Vec<u8>, v4: Ipv4Addr) {
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        out.extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
    }
}

/// `v6` as `Ipv6Addr`'s `Display` writes it (RFC 5952): lowercase hex groups without leading
/// zeros, the longest run of two or more zero groups (the first of equals) as `::`, and an
/// IPv4-mapped address as `::ffff:` and dotted decimal.
fn ipv6(out: &mut Vec<u8>, v6: Ipv6Addr) {
    if let Some(v4) = v6.to_ipv4_mapped() {
        out.extend_from_slice(b"::ffff:");
        dotted(out, v4);
        return;
    }
    let groups = v6.segments();
    let (mut zeros_at, mut zeros) = (0, 0);
    let mut run = 0;
    for (i, &g) in groups.iter().enumerate() {
        run = if g == 0 { run + 1 } else { 0 };
        if run > zeros {
            (zeros_at, zeros) = (i + 1 - run, run);
        }
    }
    let hex = |out: &mut Vec<u8>, groups: &[u16]| {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (i, &g) in groups.iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            let shown = (16 - g.leading_zeros()).div_ceil(4).max(1);
            for d in (0..shown).rev() {
                out.push(DIGITS[usize::from((g >> (4 * d)) & 0xf)]);
            }
        }
    };
    if zeros < 2 {
        hex(out, &groups);
        return;
    }
    hex(out, &groups[..zeros_at]);
    out.extend_from_slice(b"::");
    hex(out, &groups[zeros_at + zeros..]);
}

/// Appends `e` as one JSON object (no newline).
pub fn write_flow(e: &FlowEvent, out: &mut Vec<u8>) {
    let mut o = Object { out, first: true };
    o.str("event", e.event);
    o.str("time", &e.time);
    let p = &e.endpoints;
    o.str("network.transport", p.transport);
    o.str("network.type", p.network_type);
    o.ip("client.address", p.client_address);
    o.num("client.port", u64::from(p.client_port));
    o.ip("server.address", p.server_address);
    o.num("server.port", u64::from(p.server_port));
    o.str("sealwatch.encryption", e.encryption);
    o.str("network.protocol.name", e.protocol);
    o.str("sealwatch.action", e.action);
    o.str("interface", &e.interface);
    if let Some(v) = e.encryption_status {
        o.num("sealwatch.encryption_status", u64::from(v));
    }
    o.opt_bool("sealwatch.fully_encrypted", e.fully_encrypted);
    o.opt_bool("sealwatch.starttls", e.starttls);
    o.opt_bool(
        "sealwatch.plaintext_after_encryption",
        e.plaintext_after_encryption,
    );
    o.opt_str("tls.protocol.version", e.tls_version);
    o.opt_str("tls.cipher", e.tls_cipher.as_deref());
    o.opt_str("tls.server.name", e.tls_server_name.as_deref());
    o.opt_str("tls.alpn", e.tls_alpn.as_deref());
    o.opt_str("tls.key_exchange.group", e.tls_group.as_deref());
    o.opt_bool("sealwatch.pq", e.pq);
    o.opt_str("tls.client.ja4", e.ja4.as_deref());
    if !e.weak.is_empty() {
        o.key("sealwatch.weak");
        o.out.push(b'[');
        for (i, w) in e.weak.iter().enumerate() {
            if i > 0 {
                o.out.push(b',');
            }
            string(o.out, w);
        }
        o.out.push(b']');
    }
    o.str("sealwatch.direction", e.direction);
    o.opt_str("sealwatch.exclusion", e.exclusion.as_deref());
    o.attribution(&e.attribution);
    if let Some(end) = &e.end {
        o.opt_str("sealwatch.end_reason", end.reason);
        o.str("sealwatch.flow.start", &end.start);
        o.num("sealwatch.flow.duration_ms", end.duration_ms);
        o.num("sealwatch.client.packets", end.client_packets);
        o.num("sealwatch.client.bytes", end.client_bytes);
        o.num("sealwatch.server.packets", end.server_packets);
        o.num("sealwatch.server.bytes", end.server_bytes);
    }
    if let Some(r) = &e.record {
        o.str("sealwatch.record.start", &r.start);
        o.str("sealwatch.record.end", &r.end);
        o.str("sealwatch.flow.state", r.state);
    }
    o.out.push(b'}');
}

/// An object being written: keys are ours (plain ASCII, nothing to escape).
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Object<'_> {
    fn key(&mut self, key: &str) {
        self.out.push(if self.first { b'{' } else { b',' });
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        string(self.out, value);
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    fn num(&mut self, key: &str, value: u64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn opt_bool(&mut self, key: &str, value: Option<bool>) {
        if let Some(v) = value {
            self.key(key);
            self.out
                .extend_from_slice(if v { b"true" } else { b"false" });
        }
    }

    fn ip(&mut self, key: &str, ip: IpAddr) {
        self.key(key);
        self.out.push(b'"');
        // Digits, letters, dots and colons: nothing to escape. Written without `fmt`, which
        // was most of an event's cost.
        match ip {
            IpAddr::V4(v4) => dotted(self.out, v4),
            IpAddr::V6(v6) => ipv6(self.out, v6),
        }
        self.out.push(b'"');
    }

    /// The keys of [`Attribution`]'s own `Serialize`, in its order.
    fn attribution(&mut self, a: &Attribution) {
        self.opt_str("sealwatch.local_side", a.local_side);
        self.party("", &a.local);
        self.party("sealwatch.peer.", &a.peer);
    }

    fn party(&mut self, prefix: &str, p: &Party) {
        if p.is_empty() {
            return;
        }
        let mut key = String::with_capacity(prefix.len() + 32);
        let mut keyed = |o: &mut Object<'_>, name: &str| {
            key.clear();
            key.push_str(prefix);
            key.push_str(name);
            o.key(&key);
        };
        if let Some(pid) = p.pid {
            keyed(self, "process.pid");
            self.out
                .extend_from_slice(itoa::Buffer::new().format(pid).as_bytes());
        }
        for (name, value) in [
            ("process.executable.name", &p.executable),
            ("process.command_line", &p.command_line),
            ("process.owner", &p.owner),
            ("container.id", &p.container_id),
            ("k8s.pod.name", &p.pod),
            ("k8s.namespace.name", &p.namespace),
        ] {
            if let Some(v) = value {
                keyed(self, name);
                string(self.out, v);
            }
        }
    }
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, control characters as `\n`,
/// `\t`, ... or `\u00XX`; everything else (non-ASCII included) as is.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        // Almost always: names, numbers, fingerprints.
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        if short == 0 {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.push(b'\\');
            out.push(short);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any byte is a control character, `"` or `\`: eight bytes at a time (the classic
/// "has a byte less than n / equal to zero" word tricks, exact as yes-or-no answers).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_ne_bytes(w);
        if w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0
            || has_zero(w ^ (ONES * u64::from(b'"')))
            || has_zero(w ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
mod tests {
    use sealwatch_common::{
        Encryption, Protocol,
        flow::FlowKey,
        net::{FAMILY_IPV6, IPPROTO_TCP, IPPROTO_UDP},
    };

    use super::*;
    use crate::{
        event::{Endpoints, Event, FlowEnd, RecordWindow},
        policy::Action,
    };

    fn bare() -> FlowEvent {
        let key = FlowKey::ipv4(IPPROTO_TCP, [10, 0, 0, 2], 40000, [10, 0, 0, 1], 80).0;
        FlowEvent::new(
            "flow",
            "2026-11-23T10:00:00.000Z".into(),
            Endpoints::new(&key, 1),
            Protocol::Http,
            Encryption::Plaintext,
            Action::Alert,
            "veth0".into(),
        )
    }

    /// Every optional key set, and strings that need escaping.
    fn full() -> FlowEvent {
        let key = FlowKey::canonical(
            FAMILY_IPV6,
            IPPROTO_UDP,
            [0x00fd, 0, 0, 0x0100_0000],
            443,
            [0x00fd, 0, 0, 0x0200_0000],
            51000,
        )
        .0;
        let party = |pid: u32, name: &str| Party {
            pid: Some(pid),
            executable: Some(name.into()),
            command_line: Some(format!("/usr/bin/{name} --say \"hi\"\\\n\t\u{1}\u{7f}é")),
            owner: Some("root".into()),
            container_id: Some("abc123".into()),
            pod: Some("web-0".into()),
            namespace: Some("shop".into()),
        };
        let mut e = FlowEvent::new(
            "flow.end",
            "2026-11-23T10:00:01.500Z".into(),
            Endpoints::new(&key, 0),
            Protocol::Quic,
            Encryption::Encrypted,
            Action::Excluded,
            "eth0 \"quoted\"".into(),
        );
        e.starttls = Some(false);
        e.plaintext_after_encryption = Some(true);
        e.tls_version = Some("1.3");
        e.tls_cipher = Some("TLS_AES_128_GCM_SHA256".into());
        e.tls_server_name = Some("db.internal".into());
        e.tls_alpn = Some("h3,h2".into());
        e.tls_group = Some("X25519MLKEM768".into());
        e.pq = Some(true);
        e.ja4 = Some("q13d0312h3_55b375c5d22e_7d4ea5e4d9f8".into());
        e.weak = vec!["tls<1.2".into(), "rc4".into()];
        e.direction = "north-south";
        e.exclusion = Some("metadata\r\n".into());
        e.attribution = Attribution {
            local_side: Some("server"),
            local: party(41, "nginx"),
            peer: party(42, "curl"),
        };
        e.end = Some(FlowEnd {
            reason: Some("fin"),
            start: "2026-11-23T10:00:00.000Z".into(),
            duration_ms: 1500,
            client_packets: 7,
            client_bytes: 900,
            server_packets: u64::MAX,
            server_bytes: 0,
        });
        e.record = Some(RecordWindow {
            start: "a".into(),
            end: "b".into(),
            state: "ended",
        });
        e
    }

    fn same_as_serde(e: FlowEvent) {
        let mut ours = Vec::new();
        write_flow(&e, &mut ours);
        let theirs = serde_json::to_vec(&Event::Flow(Box::new(e))).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
    }

    #[test]
    fn writes_what_serde_writes() {
        same_as_serde(bare());
        same_as_serde(full());
        // Parts missing: an end without a reason, one party only, no record.
        let mut e = full();
        e.attribution.peer = Party::default();
        e.attribution.local.pid = None;
        if let Some(end) = e.end.as_mut() {
            end.reason = None;
        }
        e.record = None;
        e.fully_encrypted = Some(true);
        e.encryption_status = None;
        same_as_serde(e);
    }

    #[test]
    fn addresses_are_written_as_serde_writes_them() {
        for a in [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [10, 9, 100, 1],
            [1, 20, 3, 199],
        ] {
            let mut e = bare();
            e.endpoints.client_address = IpAddr::from(a);
            same_as_serde(e);
        }
    }

    #[test]
    fn finds_what_needs_escaping_anywhere_in_a_word() {
        for special in [0u8, 0x1f, b'"', b'\\', b'\n'] {
            for at in 0..19 {
                let mut text = b"sealwatch-db.intern".to_vec();
                text[at] = special;
                assert!(needs_escape(&text), "{special:#x} at {at}");
            }
        }
        assert!(!needs_escape(
            "plain é ✓ text, 0x20 and up: ~!#$%&'()*+/:;<=>?@[]^_`{|}".as_bytes()
        ));
    }

    #[test]
    fn escapes_every_control_character() {
        let all: String = (0u8..0x80).map(char::from).collect();
        let mut ours = Vec::new();
        string(&mut ours, &all);
        let theirs = serde_json::to_vec(&all).unwrap_or_default();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn ipv6_addresses_read_as_std_writes_them() {
        let mut patterns: Vec<[u16; 8]> = vec![
            [0; 8],
            [0, 0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001],
            [0, 0, 0, 0, 0, 0, 0x0a00, 0x0001],
            [0x2001, 0xdb8, 0, 0, 1, 0, 0, 1],
            [0x2001, 0xdb8, 0, 1, 0, 0, 0, 1],
            [0xfe80, 0, 0, 0, 0x1, 0x2, 0x3, 0x4],
            [1, 0, 2, 0, 3, 0, 4, 0],
            [0xffff; 8],
        ];
        // Every placement of zero groups, over groups of every digit count.
        let values = [0x1u16, 0x20, 0x300, 0x4000, 0xabcd];
        for mask in 0u32..256 {
            let mut g = [0u16; 8];
            for (i, slot) in g.iter_mut().enumerate() {
                if mask & (1 << i) != 0 {
                    *slot = values[(i + mask as usize) % values.len()];
                }
            }
            patterns.push(g);
        }
        for g in patterns {
            let v6 = Ipv6Addr::from(g);
            let mut out = Vec::new();
            ipv6(&mut out, v6);
            assert_eq!(String::from_utf8(out).unwrap(), v6.to_string(), "{g:x?}");
        }
    }
}
