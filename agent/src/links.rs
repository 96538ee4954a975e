//! The network interfaces of this namespace, as rtnetlink tells them: a dump of those present,
//! then every one that appears or goes away (pod veths on a Kubernetes node), for
//! `--all-interfaces`.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use tokio::io::{Interest, unix::AsyncFd};

const NETLINK_ROUTE: libc::c_int = 0;
const RTMGRP_LINK: u32 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFF_LOOPBACK: u32 = 0x8;
const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;

/// One interface appearing (or changing) or going away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    Up {
        index: u32,
        name: String,
        loopback: bool,
    },
    Gone {
        index: u32,
        name: String,
    },
}

/// An rtnetlink socket subscribed to link changes.
pub struct LinkWatch {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
}

impl LinkWatch {
    /// Subscribes, then asks for every interface present: they come first, as `Up`.
    pub fn open() -> io::Result<LinkWatch> {
        // SAFETY: plain socket(2); the fd is owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed sockaddr_nl is valid; we set family and groups.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = RTMGRP_LINK;
        // SAFETY: `addr` is a sockaddr_nl of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        send_dump_request(&fd)?;
        Ok(LinkWatch {
            // SAFETY: the socket is owned by the AsyncFd and closed only when it is dropped.
            fd: unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?,
            buf: vec![0; 64 * 1024],
        })
    }

    /// The interfaces present: the answer to the dump `open` asked for, read to its end.
    /// Changes that raced with it come along, in order.
    pub async fn present(&mut self) -> io::Result<Vec<LinkChange>> {
        let mut all = Vec::new();
        loop {
            let batch = self.batch().await?;
            all.extend(batch.changes);
            if batch.done {
                return Ok(all);
            }
        }
    }

    /// The next batch of changes.
    pub async fn next(&mut self) -> io::Result<Vec<LinkChange>> {
        Ok(self.batch().await?.changes)
    }

    async fn batch(&mut self) -> io::Result<Batch> {
        loop {
            let mut guard = self.fd.readable().await?;
            let buf = &mut self.buf;
            match guard.try_io(|fd| {
                // SAFETY: `buf` is writable for its length.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(Ok(n)) => return Ok(parse(&self.buf[..n])),
                // ENOBUFS: changes came faster than we read; the next messages still arrive.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

fn send_dump_request(fd: &OwnedFd) -> io::Result<()> {
    let mut req = [0u8; NLMSG_HDR + IFINFOMSG];
    let len = req.len() as u32;
    req[0..4].copy_from_slice(&len.to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[NLMSG_HDR] = libc::AF_UNSPEC as u8;
    // SAFETY: a valid socket and a buffer of the length passed; the kernel is the default
    // destination of an unconnected netlink socket.
    let n = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One datagram's link changes; `done` when it ended a dump.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub changes: Vec<LinkChange>,
    pub done: bool,
}

/// Netlink messages -> link changes; other types are skipped, and a truncated message ends
/// the batch.
pub fn parse(mut buf: &[u8]) -> Batch {
    let mut out = Batch::default();
    while buf.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < NLMSG_HDR || len > buf.len() {
            break;
        }
        let body = &buf[NLMSG_HDR..len];
        if matches!(kind, RTM_NEWLINK | RTM_DELLINK)
            && let Some(change) = link(kind, body)
        {
            out.changes.push(change);
        }
        if kind == NLMSG_DONE || kind == NLMSG_ERROR {
            out.done = true;
            break;
        }
        buf = &buf[align(len).min(buf.len())..];
    }
    out
}

fn link(kind: u16, body: &[u8]) -> Option<LinkChange> {
    if body.len() < IFINFOMSG {
        return None;
    }
    let index = i32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
    let flags = u32::from_ne_bytes([body[8], body[9], body[10], body[11]]);
    let index = u32::try_from(index).ok()?;
    let mut attrs = &body[IFINFOMSG..];
    let mut name = None;
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            break;
        }
        if kind == IFLA_IFNAME {
            let value = &attrs[4..len];
            let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
            name = Some(String::from_utf8_lossy(&value[..end]).into_owned());
        }
        attrs = &attrs[align(len).min(attrs.len())..];
    }
    let name = name?;
    Some(if kind == RTM_NEWLINK {
        LinkChange::Up {
            index,
            name,
            loopback: flags & IFF_LOOPBACK != 0,
        }
    } else {
        LinkChange::Gone { index, name }
    })
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RTM_NEWLINK/DELLINK message as the kernel sends it: header, ifinfomsg, attributes
    /// (IFLA_MTU before IFLA_IFNAME, as real messages have several).
    fn message(kind: u16, index: i32, flags: u32, name: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&8u16.to_ne_bytes());
        attrs.extend_from_slice(&4u16.to_ne_bytes()); // IFLA_MTU
        attrs.extend_from_slice(&1500u32.to_ne_bytes());
        let name_len = 4 + name.len() + 1;
        attrs.extend_from_slice(&(name_len as u16).to_ne_bytes());
        attrs.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        attrs.extend_from_slice(name.as_bytes());
        attrs.push(0);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut body = vec![0u8; IFINFOMSG];
        body[4..8].copy_from_slice(&index.to_ne_bytes());
        body[8..12].copy_from_slice(&flags.to_ne_bytes());
        body.extend_from_slice(&attrs);
        let mut msg = Vec::new();
        msg.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn a_dump_lists_every_link_and_marks_loopback() {
        let mut batch = message(RTM_NEWLINK, 1, IFF_LOOPBACK | 1, "lo");
        batch.extend(message(RTM_NEWLINK, 7, 1, "veth7f3a2c1"));
        batch.extend(message(NLMSG_DONE, 0, 0, "x"));
        let parsed = parse(&batch);
        assert!(parsed.done);
        assert_eq!(
            parsed.changes,
            vec![
                LinkChange::Up {
                    index: 1,
                    name: "lo".into(),
                    loopback: true
                },
                LinkChange::Up {
                    index: 7,
                    name: "veth7f3a2c1".into(),
                    loopback: false
                },
            ]
        );
    }

    #[test]
    fn removals_and_truncated_messages() {
        let gone = message(RTM_DELLINK, 9, 0, "eni3a1b");
        assert_eq!(
            parse(&gone).changes,
            vec![LinkChange::Gone {
                index: 9,
                name: "eni3a1b".into()
            }]
        );
        assert!(parse(&gone[..gone.len() - 6]).changes.is_empty());
        assert!(parse(&[0xff; 7]).changes.is_empty());
    }

    #[test]
    fn the_kernel_answers_a_dump_with_loopback() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        let changes = rt
            .block_on(async { LinkWatch::open()?.present().await })
            .expect("netlink");
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, LinkChange::Up { loopback: true, .. })),
            "{changes:?}"
        );
    }
}
