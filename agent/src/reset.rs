//! Making the clients of a blocked flow fail fast. Dropping a flow's packets leaves its
//! processes waiting on retransmission timeouts for minutes; destroying the flow's local sockets
//! with sock_diag's `SOCK_DESTROY` (what `ss -K` does) hands them an error at once, and a TCP
//! socket also sends its peer a reset.
//!
//! The kernel's lookup for `SOCK_DESTROY` is not exact: a TCP 4-tuple with no connection falls
//! back to the listening socket on the local port, and a UDP one to a socket that is only bound
//! there, so destroying by 4-tuple alone can shut a whole server down. Each socket is therefore
//! first looked up with `SOCK_DIAG_BY_FAMILY`, checked to be this flow's, and destroyed by its
//! cookie, which names that one socket.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use sealwatch_common::{
    flow::FlowKey,
    net::{FAMILY_IPV4, FAMILY_IPV6, IPPROTO_TCP, IPPROTO_UDP},
};

/// sock_diag message types (linux/sock_diag.h); libc has neither.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
/// `idiag_states`: every state, so the exact lookup is not filtered.
const ALL_STATES: u32 = u32::MAX;
/// `idiag_cookie` that matches any socket.
const INET_DIAG_NOCOOKIE: [u32; 2] = [u32::MAX; 2];
/// TCP state as inet_diag reports it (include/net/tcp_states.h).
const TCP_TIME_WAIT: u8 = 6;
/// How long to wait for the kernel's answer; it answers at once, so running out means the
/// socket is broken and waiting longer would only hold up enforcement.
const ANSWER_TIMEOUT_SECS: libc::time_t = 1;
/// An answer is one `inet_diag_msg` with a few attributes, or an ack echoing our request.
const RECV_BUFFER: usize = 8192;
const NLMSG_HDR_LEN: usize = size_of::<libc::nlmsghdr>();
/// `inet_diag_msg` up to the end of its socket id, the part we read.
const DIAG_MSG_MIN_LEN: usize = 4 + size_of::<InetDiagSockId>();

/// `struct inet_diag_sockid` (linux/inet_diag.h). Ports and addresses in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct InetDiagSockId {
    sport: u16,
    dport: u16,
    src: [u32; 4],
    dst: [u32; 4],
    interface: u32,
    cookie: [u32; 2],
}
const _: () = assert!(size_of::<InetDiagSockId>() == 48);

/// `struct inet_diag_req_v2` (linux/inet_diag.h).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct InetDiagReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: InetDiagSockId,
}
const _: () = assert!(size_of::<InetDiagReqV2>() == 56);

/// One netlink datagram: the header and the request, with no padding between them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Request {
    header: libc::nlmsghdr,
    body: InetDiagReqV2,
}
const _: () = assert!(size_of::<Request>() == NLMSG_HDR_LEN + size_of::<InetDiagReqV2>());

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("cannot open a sock_diag netlink socket: {source}")]
    Open {
        #[source]
        source: io::Error,
    },
    #[error("cannot send a sock_diag request: {source}")]
    Send {
        #[source]
        source: io::Error,
    },
    #[error("cannot read the kernel's sock_diag answer: {source}")]
    Receive {
        #[source]
        source: io::Error,
    },
    #[error("the kernel did not answer a sock_diag request within {ANSWER_TIMEOUT_SECS} s")]
    NoAnswer,
    #[error("malformed sock_diag answer from the kernel: {what}")]
    Malformed { what: &'static str },
    #[error(
        "this kernel cannot destroy sockets (built without CONFIG_INET_DIAG_DESTROY): {source}"
    )]
    Unsupported {
        #[source]
        source: io::Error,
    },
    #[error("destroying sockets needs CAP_NET_ADMIN in this network namespace: {source}")]
    PermissionDenied {
        #[source]
        source: io::Error,
    },
    #[error("the kernel refused {request}: {source}")]
    Kernel {
        request: &'static str,
        #[source]
        source: io::Error,
    },
}

/// One end of a flow: raw network-order address words (IPv4 in word 0), host-order port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Endpoint {
    addr: [u32; 4],
    port: u16,
}

/// What `SOCK_DIAG_BY_FAMILY` told about a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DiagSocket {
    /// `AF_INET` or `AF_INET6`; an IPv6 socket may carry an IPv4 flow in mapped addresses.
    family: u8,
    state: u8,
    local: Endpoint,
    remote: Endpoint,
    cookie: [u32; 2],
}

/// Destroys every socket in this network namespace whose 4-tuple is one of the two orientations
/// of `key` (the local end may be either side). Returns how many sockets were destroyed (0 when
/// none is local). Listening sockets, sockets only bound to a flow's port and TIME_WAIT entries
/// are left alone: they serve other flows or have no process waiting on them. When both ends
/// are local TCP sockets, destroying the first resets the second before it is looked up, so
/// that one fails too (with `ECONNRESET`) but is not counted.
pub fn destroy_flow(key: &FlowKey) -> Result<usize, ResetError> {
    let Some(family) = address_family(key.family) else {
        return Ok(0);
    };
    if key.proto != IPPROTO_TCP && key.proto != IPPROTO_UDP {
        return Ok(0);
    }
    let lo = Endpoint {
        addr: key.addr_lo,
        port: key.port_lo,
    };
    let hi = Endpoint {
        addr: key.addr_hi,
        port: key.port_hi,
    };
    let mut diag = SockDiag::open()?;
    let mut destroyed = 0;
    for (local, remote) in [(lo, hi), (hi, lo)] {
        // Whichever socket the kernel's lookup picks (for UDP the lookup takes the ends the
        // other way round); only its own tuple says whether it belongs to this flow.
        let Some(found) = diag.find(family, key.proto, local, remote)? else {
            continue;
        };
        let Some((local, remote)) = flow_orientation(family, lo, hi, &found) else {
            continue;
        };
        if key.proto == IPPROTO_TCP && found.state == TCP_TIME_WAIT {
            continue;
        }
        // A destroyed socket is unhashed (TCP) or disconnected (UDP), so the other
        // orientation's lookup cannot pick it again as this flow's.
        if diag.destroy(family, key.proto, local, remote, found.cookie)? {
            destroyed += 1;
        }
    }
    Ok(destroyed)
}

fn address_family(family: u8) -> Option<u8> {
    match family {
        FAMILY_IPV4 => Some(libc::AF_INET as u8),
        FAMILY_IPV6 => Some(libc::AF_INET6 as u8),
        _ => None,
    }
}

/// `(local, remote)` when `found` is a socket of the flow between `lo` and `hi`, exactly.
fn flow_orientation(
    family: u8,
    lo: Endpoint,
    hi: Endpoint,
    found: &DiagSocket,
) -> Option<(Endpoint, Endpoint)> {
    [(lo, hi), (hi, lo)].into_iter().find(|&(local, remote)| {
        same_endpoint(family, local, found.family, found.local)
            && same_endpoint(family, remote, found.family, found.remote)
    })
}

/// Whether `got`, reported for a socket of `got_family`, is `want` of a flow of `want_family`.
/// A dual-stack IPv6 socket reports the ends of an IPv4 flow as `::ffff:a.b.c.d`.
fn same_endpoint(want_family: u8, want: Endpoint, got_family: u8, got: Endpoint) -> bool {
    const MAPPED: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
    if want.port != got.port {
        return false;
    }
    if want_family == libc::AF_INET as u8 {
        if got_family == libc::AF_INET6 as u8 {
            got.addr == [0, 0, MAPPED, want.addr[0]]
        } else {
            got.addr[0] == want.addr[0]
        }
    } else {
        got_family == want_family && got.addr == want.addr
    }
}

/// A `NETLINK_SOCK_DIAG` socket and the sequence number of its last request.
struct SockDiag {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl SockDiag {
    fn open() -> Result<SockDiag, ResetError> {
        let open_error = |source| ResetError::Open { source };
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if raw < 0 {
            return Err(open_error(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a descriptor socket(2) just returned, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let timeout = libc::timeval {
            tv_sec: ANSWER_TIMEOUT_SECS,
            tv_usec: 0,
        };
        // SAFETY: `timeout` is a valid timeval for the duration of the call and its size is
        // passed along.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(open_error(io::Error::last_os_error()));
        }

        // Connected to the kernel (port 0), the socket refuses datagrams from any other
        // process, so nobody can forge the answer that says a socket is gone.
        // SAFETY: sockaddr_nl is integers only, for which all zeroes is a valid value.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `kernel` is a valid sockaddr_nl for the duration of the call and its size is
        // passed along.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&raw const kernel).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(open_error(io::Error::last_os_error()));
        }
        Ok(SockDiag {
            fd,
            seq: 0,
            buf: vec![0; RECV_BUFFER],
        })
    }

    /// The socket the kernel's exact lookup finds for `local` -> `remote`, if any.
    fn find(
        &mut self,
        family: u8,
        proto: u8,
        local: Endpoint,
        remote: Endpoint,
    ) -> Result<Option<DiagSocket>, ResetError> {
        let (found, code) = self.exchange(
            SOCK_DIAG_BY_FAMILY,
            family,
            proto,
            local,
            remote,
            INET_DIAG_NOCOOKIE,
        )?;
        match code {
            0 => Ok(found),
            // Also what a kernel without a diag handler for `proto` answers: nothing to find.
            c if c == -libc::ENOENT => Ok(None),
            c => Err(refused("SOCK_DIAG_BY_FAMILY", c)),
        }
    }

    /// Destroys the socket `local` -> `remote` with `cookie`; false when it is gone already.
    fn destroy(
        &mut self,
        family: u8,
        proto: u8,
        local: Endpoint,
        remote: Endpoint,
        cookie: [u32; 2],
    ) -> Result<bool, ResetError> {
        let (_, code) = self.exchange(SOCK_DESTROY, family, proto, local, remote, cookie)?;
        match code {
            0 => Ok(true),
            c if c == -libc::ENOENT => Ok(false),
            c => Err(refused("SOCK_DESTROY", c)),
        }
    }

    /// Sends one request and reads up to its ack. Returns the socket described in the answer
    /// (requests for one socket get at most one) and the ack's code, 0 or a negative errno.
    fn exchange(
        &mut self,
        kind: u16,
        family: u8,
        proto: u8,
        local: Endpoint,
        remote: Endpoint,
        cookie: [u32; 2],
    ) -> Result<(Option<DiagSocket>, i32), ResetError> {
        self.seq = self.seq.wrapping_add(1);
        let request = encode(self.seq, kind, family, proto, local, remote, cookie);
        // SAFETY: `request` is a repr(C) struct of integers without padding (size asserted
        // above), readable for its whole size during the call.
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                (&raw const request).cast(),
                size_of::<Request>(),
                0,
            )
        };
        if sent < 0 {
            return Err(ResetError::Send {
                source: io::Error::last_os_error(),
            });
        }

        let mut found = None;
        loop {
            // SAFETY: `buf` is writable for its whole length during the call.
            let received = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            let Ok(len) = usize::try_from(received) else {
                let source = io::Error::last_os_error();
                match source.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Err(ResetError::NoAnswer),
                    _ => return Err(ResetError::Receive { source }),
                }
            };
            let mut rest = self.buf.get(..len).unwrap_or_default();
            while !rest.is_empty() {
                let (header, payload, next) = split_message(rest)?;
                rest = next;
                if header.nlmsg_seq != self.seq {
                    continue;
                }
                match header.nlmsg_type {
                    NLMSG_ERROR => {
                        let code = read_u32(payload, 0).ok_or(ResetError::Malformed {
                            what: "ack without an error code",
                        })?;
                        return Ok((found, code as i32));
                    }
                    SOCK_DIAG_BY_FAMILY => {
                        found = Some(decode_diag_msg(payload).ok_or(ResetError::Malformed {
                            what: "inet_diag_msg too short",
                        })?);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The error for a request the kernel answered with `code` (a negative errno).
fn refused(request: &'static str, code: i32) -> ResetError {
    let errno = code.saturating_neg();
    let source = io::Error::from_raw_os_error(errno);
    match errno {
        libc::EOPNOTSUPP => ResetError::Unsupported { source },
        libc::EPERM | libc::EACCES => ResetError::PermissionDenied { source },
        _ => ResetError::Kernel { request, source },
    }
}

fn encode(
    seq: u32,
    kind: u16,
    family: u8,
    proto: u8,
    local: Endpoint,
    remote: Endpoint,
    cookie: [u32; 2],
) -> Request {
    Request {
        header: libc::nlmsghdr {
            nlmsg_len: size_of::<Request>() as u32,
            nlmsg_type: kind,
            // The ack is the only answer a destroy gets, and it ends a lookup's answer.
            nlmsg_flags: (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
            nlmsg_seq: seq,
            nlmsg_pid: 0,
        },
        body: InetDiagReqV2 {
            family,
            protocol: proto,
            ext: 0,
            pad: 0,
            states: ALL_STATES,
            id: InetDiagSockId {
                sport: local.port.to_be(),
                dport: remote.port.to_be(),
                src: local.addr,
                dst: remote.addr,
                interface: 0,
                cookie,
            },
        },
    }
}

/// Splits the first netlink message off `bytes`: its header, its payload and what follows it.
fn split_message(bytes: &[u8]) -> Result<(libc::nlmsghdr, &[u8], &[u8]), ResetError> {
    let malformed = |what| ResetError::Malformed { what };
    let header = libc::nlmsghdr {
        nlmsg_len: read_u32(bytes, 0).ok_or(malformed("truncated message header"))?,
        nlmsg_type: read_u16(bytes, 4).ok_or(malformed("truncated message header"))?,
        nlmsg_flags: read_u16(bytes, 6).ok_or(malformed("truncated message header"))?,
        nlmsg_seq: read_u32(bytes, 8).ok_or(malformed("truncated message header"))?,
        nlmsg_pid: read_u32(bytes, 12).ok_or(malformed("truncated message header"))?,
    };
    let len = header.nlmsg_len as usize;
    if len < NLMSG_HDR_LEN || len > bytes.len() {
        return Err(malformed("message length outside the datagram"));
    }
    let payload = bytes.get(NLMSG_HDR_LEN..len).unwrap_or_default();
    // Messages start on 4-byte boundaries (NLMSG_ALIGN).
    let next = bytes.get(len.next_multiple_of(4)..).unwrap_or_default();
    Ok((header, payload, next))
}

/// The socket an `inet_diag_msg` describes: family, state, then the socket id at offset 4.
fn decode_diag_msg(p: &[u8]) -> Option<DiagSocket> {
    if p.len() < DIAG_MSG_MIN_LEN {
        return None;
    }
    let words = |at: usize| -> Option<[u32; 4]> {
        Some([
            read_u32(p, at)?,
            read_u32(p, at + 4)?,
            read_u32(p, at + 8)?,
            read_u32(p, at + 12)?,
        ])
    };
    let port = |at: usize| -> Option<u16> { Some(u16::from_be(read_u16(p, at)?)) };
    Some(DiagSocket {
        family: *p.first()?,
        state: *p.get(1)?,
        local: Endpoint {
            addr: words(8)?,
            port: port(4)?,
        },
        remote: Endpoint {
            addr: words(24)?,
            port: port(6)?,
        },
        cookie: [read_u32(p, 44)?, read_u32(p, 48)?],
    })
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        io::Read,
        net::{
            IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs,
            UdpSocket,
        },
        sync::mpsc,
        thread,
        time::{Duration, Instant},
    };

    /// Bound on every blocking call, so a socket that was not destroyed fails the test instead
    /// of hanging it.
    const READ_TIMEOUT: Duration = Duration::from_secs(5);

    fn words(ip: IpAddr) -> [u32; 4] {
        match ip {
            IpAddr::V4(v4) => [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
            IpAddr::V6(v6) => {
                let o = v6.octets();
                let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
                [w(0), w(4), w(8), w(12)]
            }
        }
    }

    fn key_of(proto: u8, src: SocketAddr, dst: SocketAddr) -> FlowKey {
        let family = if src.is_ipv4() {
            FAMILY_IPV4
        } else {
            FAMILY_IPV6
        };
        FlowKey::canonical(
            family,
            proto,
            words(src.ip()),
            src.port(),
            words(dst.ip()),
            dst.port(),
        )
        .0
    }

    /// `destroy_flow` for tests that need it to succeed; run unprivileged they stop here with
    /// the reason rather than with a confusing assertion further down.
    fn destroy(key: &FlowKey) -> usize {
        match destroy_flow(key) {
            Ok(n) => n,
            Err(e @ ResetError::PermissionDenied { .. }) => {
                panic!("{e}: the reset tests must run as root")
            }
            Err(e) => panic!("destroy_flow({key:?}): {e}"),
        }
    }

    fn read_error(mut stream: &TcpStream) -> io::ErrorKind {
        match stream.read(&mut [0; 16]) {
            Ok(n) => panic!("read returned {n} bytes, expected an error"),
            Err(e) => e.kind(),
        }
    }

    /// A loopback connection with both ends in this process: the end that sorts first in the
    /// flow key is destroyed (`ECONNABORTED`), its reset closes the other (`ECONNRESET`) before
    /// that one is looked up, and the listener survives.
    fn tcp_flow_fails_fast(listen: impl ToSocketAddrs) {
        let listener = TcpListener::bind(listen).unwrap();
        let server_addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(server_addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        for s in [&client, &server] {
            s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        }
        let client_addr = client.local_addr().unwrap();
        let key = key_of(IPPROTO_TCP, client_addr, server_addr);

        let reader = client.try_clone().unwrap();
        let (ready, entering_read) = mpsc::channel();
        let blocked = thread::spawn(move || {
            ready.send(()).unwrap();
            let kind = read_error(&reader);
            (kind, Instant::now())
        });
        entering_read.recv().unwrap();
        // Time for the thread to get from the send into read(2): the point is a read that was
        // already waiting when the flow was destroyed.
        thread::sleep(Duration::from_millis(100));

        let start = Instant::now();
        let destroyed = destroy(&key);
        let (client_error, returned) = blocked.join().unwrap();
        let waited = returned.saturating_duration_since(start);
        println!(
            "{server_addr}: blocked client read returned {client_error:?} {waited:?} after destroy_flow began"
        );

        let client_is_lo =
            (key.addr_lo, key.port_lo) == (words(client_addr.ip()), client_addr.port());
        let (client_expected, server_expected) = if client_is_lo {
            (
                io::ErrorKind::ConnectionAborted,
                io::ErrorKind::ConnectionReset,
            )
        } else {
            (
                io::ErrorKind::ConnectionReset,
                io::ErrorKind::ConnectionAborted,
            )
        };
        assert_eq!(destroyed, 1);
        assert_eq!(client_error, client_expected);
        assert!(waited < Duration::from_secs(2), "read took {waited:?}");
        assert_eq!(read_error(&server), server_expected);
        // The error is reported once; afterwards both ends read as closed.
        assert_eq!((&client).read(&mut [0; 16]).unwrap(), 0);
        assert_eq!((&server).read(&mut [0; 16]).unwrap(), 0);

        // The kernel's lookup for the flow now finds the listener; it must be left alone.
        assert_eq!(destroy(&key), 0);
        let again = TcpStream::connect(server_addr).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), again.local_addr().unwrap());
    }

    #[test]
    fn tcp_v4_clients_fail_fast() {
        tcp_flow_fails_fast((Ipv4Addr::LOCALHOST, 0));
    }

    #[test]
    fn tcp_v6_clients_fail_fast() {
        tcp_flow_fails_fast((Ipv6Addr::LOCALHOST, 0));
    }

    /// An IPv6 socket serving an IPv4 client reports the flow in mapped addresses.
    #[test]
    fn dual_stack_server_of_an_ipv4_flow_is_found() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST.to_ipv6_mapped(), 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let client = TcpStream::connect(server_addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        for s in [&client, &server] {
            s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        }
        let client_addr = client.local_addr().unwrap();
        let key = key_of(IPPROTO_TCP, client_addr, server_addr);
        let server_is_lo = key.port_lo == port;
        assert_eq!(destroy(&key), 1);
        let (server_expected, client_expected) = if server_is_lo {
            (
                io::ErrorKind::ConnectionAborted,
                io::ErrorKind::ConnectionReset,
            )
        } else {
            (
                io::ErrorKind::ConnectionReset,
                io::ErrorKind::ConnectionAborted,
            )
        };
        assert_eq!(read_error(&server), server_expected);
        assert_eq!(read_error(&client), client_expected);
    }

    #[test]
    fn unknown_flow_destroys_nothing() {
        let (tcp, _) = FlowKey::ipv4(IPPROTO_TCP, [127, 0, 0, 1], 1, [127, 0, 0, 1], 2);
        let (udp, _) = FlowKey::ipv4(IPPROTO_UDP, [127, 0, 0, 1], 1, [127, 0, 0, 1], 2);
        let (icmp, _) = FlowKey::ipv4(1, [127, 0, 0, 1], 0, [127, 0, 0, 1], 0);
        for key in [tcp, udp, icmp] {
            assert_eq!(destroy_flow(&key).unwrap(), 0, "{key:?}");
        }
    }

    /// A listener and a socket only bound to the flow's port are what the kernel's lookup falls
    /// back to; they serve other flows and must survive.
    #[test]
    fn servers_on_the_flow_port_survive() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
        assert_eq!(destroy(&key_of(IPPROTO_TCP, addr, peer)), 0);
        let _client = TcpStream::connect(addr).unwrap();
        listener.accept().unwrap();

        let bound = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = bound.local_addr().unwrap();
        assert_eq!(destroy(&key_of(IPPROTO_UDP, addr, peer)), 0);
        bound
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let err = bound.recv(&mut [0; 16]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(bound.local_addr().unwrap(), addr);
    }

    #[test]
    fn connected_udp_sockets_are_destroyed() {
        let a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let b = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        a.connect(b_addr).unwrap();
        b.connect(a_addr).unwrap();
        assert_eq!(destroy(&key_of(IPPROTO_UDP, a_addr, b_addr)), 2);
        for s in [&a, &b] {
            s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
            let err = s.recv(&mut [0; 16]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        }
    }

    #[test]
    fn request_has_ports_in_network_order() {
        let local = Endpoint {
            addr: [u32::from_ne_bytes([127, 0, 0, 1]), 0, 0, 0],
            port: 0x1234,
        };
        let remote = Endpoint {
            addr: [u32::from_ne_bytes([10, 0, 0, 2]), 0, 0, 0],
            port: 80,
        };
        let r = encode(7, SOCK_DESTROY, 2, IPPROTO_TCP, local, remote, [1, 2]);
        assert_eq!(r.header.nlmsg_len, 72);
        assert_eq!(r.body.id.sport.to_ne_bytes(), [0x12, 0x34]);
        assert_eq!(r.body.id.dport.to_ne_bytes(), [0, 80]);
        assert_eq!(r.body.id.src[0].to_ne_bytes(), [127, 0, 0, 1]);
    }

    #[test]
    fn dual_stack_socket_matches_an_ipv4_flow() {
        let v4 = |d: u8| [u32::from_ne_bytes([192, 0, 2, d]), 0, 0, 0];
        let mapped = |d: u8| [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), v4(d)[0]];
        let lo = Endpoint {
            addr: v4(1),
            port: 80,
        };
        let hi = Endpoint {
            addr: v4(2),
            port: 40000,
        };
        let found = DiagSocket {
            family: libc::AF_INET6 as u8,
            state: 1,
            local: Endpoint {
                addr: mapped(1),
                port: 80,
            },
            remote: Endpoint {
                addr: mapped(2),
                port: 40000,
            },
            cookie: [5, 0],
        };
        let af_inet = libc::AF_INET as u8;
        assert_eq!(flow_orientation(af_inet, lo, hi, &found), Some((lo, hi)));
        // A listener on the flow's port: what the kernel's lookup falls back to.
        let listener = DiagSocket {
            state: 10,
            remote: Endpoint {
                addr: [0; 4],
                port: 0,
            },
            ..found
        };
        assert_eq!(flow_orientation(af_inet, lo, hi, &listener), None);
    }
}
