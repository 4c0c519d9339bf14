//! nf_tables over netlink: the testbed's table (its fault chain, and the
//! NAT set-up of `testbed/nat.rs`), each fault's rules and their removal,
//! sent to the router's kernel as batches on a socket kept open for the
//! testbed's life, so applying a fault is one `send` and its acks (no
//! `ip netns exec … nft` process, ~3 ms of spawning, per fault).
//!
//! The socket is opened by a thread that entered the router's namespace
//! (setns(2)); a netlink socket belongs to the namespace it was created in
//! for its whole life, whichever thread uses it later.
//!
//! The socket is netlink-sys's (already the sock_diag observer's); the
//! nf_tables messages are written here. The crates that write them were
//! weighed: rustables is GPL-3.0-or-later (kaspec is Apache-2.0) and runs
//! bindgen, so libclang, at build time; nftnl + mnl link libnftnl and
//! libmnl (the kaspec binary of the servers' image links only glibc, and a
//! build would need their -dev packages); neli has no nf_tables messages
//! (only nflog's); nlink has them, in a large async library (v0.33, its
//! own netlink-sys 0.9). The expressions kaspec needs are few.
//!
//! The messages are the ones `nft` 1.0.6 sends for the same rules (seen with
//! `nft --debug=netlink`), so `nft list` reads them back as the text
//! [`super::nft`] renders (a test compares the two). Numbers are from the
//! kernel's UAPI headers: `include/uapi/linux/netlink.h`,
//! `include/uapi/linux/netfilter/nfnetlink.h`,
//! `include/uapi/linux/netfilter/nf_tables.h` and
//! `include/uapi/linux/netfilter/nfnetlink_cttimeout.h`; the rule and table
//! comments are libnftnl's user data TLVs (`include/libnftnl/udata.h`:
//! `NFTNL_UDATA_RULE_COMMENT` = `NFTNL_UDATA_TABLE_COMMENT` = 0, the string
//! with its NUL, as `nftnl_udata_put_strz` writes it).

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::host::Host;
use crate::{Error, Result};

// netlink.h
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 0x2;
// nfnetlink.h: batch delimiters (NLMSG_MIN_TYPE, +1) and the subsystem.
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
// nf_tables.h: enum nf_tables_msg_types.
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWOBJ: u16 = 18;
/// `NFPROTO_INET` (netfilter.h): the `inet` family of the fault table.
const NFPROTO_INET: u8 = 1;
/// `NFPROTO_IPV4`, what `meta nfproto` loads for an IPv4 packet.
pub const NFPROTO_IPV4: u8 = 2;
/// `NF_ACCEPT` and `NF_DROP` (netfilter.h).
const NF_ACCEPT: u32 = 1;
const NF_DROP: u32 = 0;

// Attributes (nf_tables.h): enum nft_table_attributes, nft_chain_attributes,
// nft_hook_attributes, nft_rule_attributes, nft_list_attributes,
// nft_expression_attributes, nft_data_attributes, nft_verdict_attributes and
// each expression's own.
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_USERDATA: u16 = 6;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_REJECT_TYPE: u16 = 1;
const NFTA_REJECT_ICMP_CODE: u16 = 2;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_OBJREF_IMM_TYPE: u16 = 1;
const NFTA_OBJREF_IMM_NAME: u16 = 2;
const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_OBJ_NAME: u16 = 2;
const NFTA_OBJ_TYPE: u16 = 3;
const NFTA_OBJ_DATA: u16 = 4;
const NFTA_CT_TIMEOUT_L3PROTO: u16 = 1;
const NFTA_CT_TIMEOUT_L4PROTO: u16 = 2;
const NFTA_CT_TIMEOUT_DATA: u16 = 3;
/// `NFT_OBJECT_CT_TIMEOUT` (nf_tables.h).
const NFT_OBJECT_CT_TIMEOUT: u32 = 7;
/// `NFT_CT_STATE` (enum nft_ct_keys).
const NFT_CT_STATE: u32 = 0;
/// `NF_CT_STATE_INVALID_BIT` (nf_conntrack_common.h).
pub const CT_STATE_INVALID: u32 = 1;
/// `NFT_REG_VERDICT` and `NFT_REG_1` (enum nft_registers).
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
/// `NFT_REJECT_TCP_RST` (enum nft_reject_types).
const NFT_REJECT_TCP_RST: u32 = 1;

/// `NFT_META_OIFNAME`, `NFT_META_NFPROTO` and `NFT_META_L4PROTO` (enum
/// nft_meta_keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// The output interface's name, IFNAMSIZ (16) bytes.
    OifName = 7,
    NfProto = 15,
    L4Proto = 16,
}

/// `NFT_PAYLOAD_NETWORK_HEADER` and `NFT_PAYLOAD_TRANSPORT_HEADER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    Network = 1,
    Transport = 2,
}

/// The expressions a fault rule is made of, in the order `nft` emits them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `meta load KEY => reg 1`
    Meta(MetaKey),
    /// `payload load LEN @ BASE + OFFSET => reg 1`
    Payload { base: Base, offset: u32, len: u32 },
    /// `cmp eq reg 1 DATA` (DATA in network byte order, as long as the load)
    CmpEq(Vec<u8>),
    /// `counter`
    Counter,
    /// `immediate reg 0 drop`
    Drop,
    /// `reject type tcp-rst`
    RejectTcpReset,
    /// `cmp neq reg 1 DATA`
    CmpNeq(Vec<u8>),
    /// `ct load state => reg 1`
    CtState,
    /// `bitwise reg 1 = (reg 1 & MASK) ^ 0` (a 4-byte register)
    And(u32),
    /// `masq`
    Masquerade,
    /// `objref type ct-timeout name NAME` (`ct timeout set "NAME"`)
    CtTimeoutSet(String),
}

/// A base chain's type, hook (netfilter.h's `NF_INET_*`) and priority.
#[derive(Debug, Clone, Copy)]
pub struct Hook {
    pub kind: &'static str,
    pub hooknum: u32,
    pub priority: i32,
}

impl Hook {
    /// `type filter hook forward priority P`
    pub const fn forward(priority: i32) -> Hook {
        Hook { kind: "filter", hooknum: 2, priority }
    }
    /// `type filter hook prerouting priority P`
    pub const fn prerouting(priority: i32) -> Hook {
        Hook { kind: "filter", hooknum: 0, priority }
    }
    /// `type filter hook input priority P`
    pub const fn input(priority: i32) -> Hook {
        Hook { kind: "filter", hooknum: 1, priority }
    }
    /// `type nat hook postrouting priority srcnat` (srcnat = 100)
    pub const fn srcnat() -> Hook {
        Hook { kind: "nat", hooknum: 4, priority: 100 }
    }
}

/// One message of a batch, with what it does (for errors).
#[derive(Debug, Clone)]
pub struct Msg {
    kind: u16,
    flags: u16,
    attrs: Vec<u8>,
    pub what: String,
}

/// Netlink attributes being written (each 4-byte aligned, `struct nlattr`).
#[derive(Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn put(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.pad();
        self
    }

    fn pad(&mut self) {
        self.0.resize(self.0.len().next_multiple_of(4), 0);
    }

    /// A string with its NUL (the kernel's NLA_STRING attributes accept it;
    /// libmnl's `mnl_attr_put_strz`, which nft uses, writes it).
    fn strz(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.put(ty, &v)
    }

    fn be32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.put(ty, &v.to_be_bytes())
    }

    fn be64(&mut self, ty: u16, v: u64) -> &mut Self {
        self.put(ty, &v.to_be_bytes())
    }

    /// A nested attribute (written without NLA_F_NESTED, as libnftnl does).
    fn nest(&mut self, ty: u16, f: impl FnOnce(&mut Attrs)) -> &mut Self {
        let mut inner = Attrs::default();
        f(&mut inner);
        self.put(ty, &inner.0)
    }
}

/// libnftnl's comment TLV: type 0, length, the string with its NUL.
fn comment_udata(comment: &str) -> Vec<u8> {
    let bytes = comment.as_bytes();
    let len = u8::try_from(bytes.len() + 1).unwrap_or(u8::MAX);
    let mut v = vec![0u8, len];
    v.extend_from_slice(&bytes[..usize::from(len) - 1]);
    v.push(0);
    v
}

impl Expr {
    fn write(&self, list: &mut Attrs) {
        let (name, data): (&str, Attrs) = match self {
            Expr::Meta(key) => ("meta", {
                let mut a = Attrs::default();
                a.be32(NFTA_META_KEY, *key as u32).be32(NFTA_META_DREG, NFT_REG_1);
                a
            }),
            Expr::Payload { base, offset, len } => ("payload", {
                let mut a = Attrs::default();
                a.be32(NFTA_PAYLOAD_DREG, NFT_REG_1)
                    .be32(NFTA_PAYLOAD_BASE, *base as u32)
                    .be32(NFTA_PAYLOAD_OFFSET, *offset)
                    .be32(NFTA_PAYLOAD_LEN, *len);
                a
            }),
            Expr::CmpEq(value) | Expr::CmpNeq(value) => ("cmp", {
                let op = if matches!(self, Expr::CmpEq(_)) { NFT_CMP_EQ } else { NFT_CMP_NEQ };
                let mut a = Attrs::default();
                a.be32(NFTA_CMP_SREG, NFT_REG_1).be32(NFTA_CMP_OP, op).nest(NFTA_CMP_DATA, |d| {
                    d.put(NFTA_DATA_VALUE, value);
                });
                a
            }),
            Expr::CtState => ("ct", {
                let mut a = Attrs::default();
                a.be32(NFTA_CT_KEY, NFT_CT_STATE).be32(NFTA_CT_DREG, NFT_REG_1);
                a
            }),
            Expr::And(mask) => ("bitwise", {
                let mut a = Attrs::default();
                a.be32(NFTA_BITWISE_SREG, NFT_REG_1)
                    .be32(NFTA_BITWISE_DREG, NFT_REG_1)
                    .be32(NFTA_BITWISE_LEN, 4)
                    .nest(NFTA_BITWISE_MASK, |d| {
                        d.put(NFTA_DATA_VALUE, &mask.to_ne_bytes());
                    })
                    .nest(NFTA_BITWISE_XOR, |d| {
                        d.put(NFTA_DATA_VALUE, &[0; 4]);
                    });
                a
            }),
            Expr::Masquerade => ("masq", Attrs::default()),
            Expr::CtTimeoutSet(name) => ("objref", {
                let mut a = Attrs::default();
                a.be32(NFTA_OBJREF_IMM_TYPE, NFT_OBJECT_CT_TIMEOUT).strz(NFTA_OBJREF_IMM_NAME, name);
                a
            }),
            Expr::Counter => ("counter", {
                let mut a = Attrs::default();
                a.be64(NFTA_COUNTER_BYTES, 0).be64(NFTA_COUNTER_PACKETS, 0);
                a
            }),
            Expr::Drop => ("immediate", {
                let mut a = Attrs::default();
                a.be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT).nest(NFTA_IMMEDIATE_DATA, |d| {
                    d.nest(NFTA_DATA_VERDICT, |v| {
                        v.be32(NFTA_VERDICT_CODE, NF_DROP);
                    });
                });
                a
            }),
            Expr::RejectTcpReset => ("reject", {
                let mut a = Attrs::default();
                a.be32(NFTA_REJECT_TYPE, NFT_REJECT_TCP_RST).put(NFTA_REJECT_ICMP_CODE, &[0]);
                a
            }),
        };
        list.nest(NFTA_LIST_ELEM, |e| {
            e.strz(NFTA_EXPR_NAME, name).put(NFTA_EXPR_DATA, &data.0);
        });
    }
}

/// `table inet TABLE { comment "COMMENT" }`
pub fn new_table(table: &str, comment: &str) -> Msg {
    let mut t = Attrs::default();
    t.strz(NFTA_TABLE_NAME, table).put(NFTA_TABLE_USERDATA, &comment_udata(comment));
    Msg { kind: NFT_MSG_NEWTABLE, flags: NLM_F_CREATE, attrs: t.0, what: format!("creating table inet {table}") }
}

/// `delete table inet TABLE`: the table with its chains and rules.
pub fn del_table(table: &str) -> Msg {
    let mut t = Attrs::default();
    t.strz(NFTA_TABLE_NAME, table);
    Msg { kind: NFT_MSG_DELTABLE, flags: 0, attrs: t.0, what: format!("deleting table inet {table}") }
}

/// `chain inet TABLE CHAIN { type T hook H priority P; policy accept; }`
pub fn new_base_chain(table: &str, chain: &str, hook: Hook) -> Msg {
    let mut c = Attrs::default();
    c.strz(NFTA_CHAIN_TABLE, table)
        .strz(NFTA_CHAIN_NAME, chain)
        .nest(NFTA_CHAIN_HOOK, |h| {
            h.be32(NFTA_HOOK_HOOKNUM, hook.hooknum).be32(NFTA_HOOK_PRIORITY, hook.priority as u32);
        })
        .be32(NFTA_CHAIN_POLICY, NF_ACCEPT)
        .strz(NFTA_CHAIN_TYPE, hook.kind);
    Msg { kind: NFT_MSG_NEWCHAIN, flags: NLM_F_CREATE, attrs: c.0, what: format!("creating chain {chain} of table inet {table}") }
}

/// `ct timeout NAME { protocol tcp; l3proto ip; policy = { STATE: SECS, … } }`
/// with `tcp` the (CTA_TIMEOUT_TCP_* number, seconds) of the states given
/// (nfnetlink_cttimeout.h); the others keep the kernel's defaults
/// (tcp_timeout_nlattr_to_obj starts from them).
pub fn new_tcp_ct_timeout(table: &str, name: &str, tcp: &[(u16, u32)]) -> Msg {
    let mut o = Attrs::default();
    o.strz(NFTA_OBJ_TABLE, table).strz(NFTA_OBJ_NAME, name).be32(NFTA_OBJ_TYPE, NFT_OBJECT_CT_TIMEOUT).nest(NFTA_OBJ_DATA, |d| {
        d.put(NFTA_CT_TIMEOUT_L3PROTO, &(libc::AF_INET as u16).to_be_bytes())
            .put(NFTA_CT_TIMEOUT_L4PROTO, &[libc::IPPROTO_TCP as u8])
            .nest(NFTA_CT_TIMEOUT_DATA, |t| {
                for (state, secs) in tcp {
                    t.be32(*state, *secs);
                }
            });
    });
    Msg { kind: NFT_MSG_NEWOBJ, flags: NLM_F_CREATE, attrs: o.0, what: format!("creating ct timeout {name} of table inet {table}") }
}

/// `add rule inet TABLE CHAIN <exprs> [comment "COMMENT"]`
pub fn add_rule(table: &str, chain: &str, exprs: &[Expr], comment: Option<&str>, text: &str) -> Msg {
    let mut r = Attrs::default();
    r.strz(NFTA_RULE_TABLE, table).strz(NFTA_RULE_CHAIN, chain).nest(NFTA_RULE_EXPRESSIONS, |list| {
        for e in exprs {
            e.write(list);
        }
    });
    if let Some(c) = comment {
        r.put(NFTA_RULE_USERDATA, &comment_udata(c));
    }
    Msg { kind: NFT_MSG_NEWRULE, flags: NLM_F_CREATE | NLM_F_APPEND, attrs: r.0, what: format!("adding rule `{text}`") }
}

/// `flush chain inet TABLE CHAIN`: a rule deletion naming only the chain
/// deletes all its rules (nf_tables_delrule → nft_delrule_by_chain).
pub fn flush_chain(table: &str, chain: &str) -> Msg {
    let mut r = Attrs::default();
    r.strz(NFTA_RULE_TABLE, table).strz(NFTA_RULE_CHAIN, chain);
    Msg { kind: NFT_MSG_DELRULE, flags: 0, attrs: r.0, what: format!("flushing chain {chain} of table inet {table}") }
}

/// `struct nlmsghdr` + `struct nfgenmsg` + attributes.
fn frame(out: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[u8]) {
    let len = 16 + 4 + attrs.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, NFNETLINK_V0, res_id (big-endian).
    out.extend_from_slice(&[family, 0]);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(attrs);
}

/// The batch's bytes: BATCH_BEGIN, each message with NLM_F_ACK and its own
/// sequence number (`first`, `first + 1`, …), BATCH_END. The kernel commits
/// the batch as one transaction and sends the acks after the commit
/// (nfnetlink_rcv_batch: `nfnl_err_deliver` follows `ss->commit`).
fn batch(msgs: &[Msg], first: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let n = msgs.len() as u32;
    frame(&mut out, NFNL_MSG_BATCH_BEGIN, 0, first.wrapping_sub(1), 0, NFNL_SUBSYS_NFTABLES, &[]);
    for (i, m) in msgs.iter().enumerate() {
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | m.kind;
        frame(&mut out, ty, m.flags | NLM_F_ACK, first.wrapping_add(i as u32), NFPROTO_INET, 0, &m.attrs);
    }
    frame(&mut out, NFNL_MSG_BATCH_END, 0, first.wrapping_add(n), 0, NFNL_SUBSYS_NFTABLES, &[]);
    out
}

/// How long to wait for the kernel's acks before calling the commit lost.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// A NETLINK_NETFILTER socket in one namespace, kept for a testbed's life.
pub struct NfTables {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
    ns: String,
}

impl NfTables {
    /// Opens the socket from a thread inside `host`'s namespace.
    pub fn open(host: &Host) -> Result<NfTables> {
        let ns = host.ns.clone();
        let sock = host.run(|| -> io::Result<Socket> {
            let mut s = Socket::new(NETLINK_NETFILTER)?;
            s.bind_auto()?;
            s.connect(&SocketAddr::new(0, 0))?;
            let tv = libc::timeval { tv_sec: ACK_TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
            // SAFETY: a valid fd and a timeval of the size given.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(s)
        })?;
        let sock = sock.map_err(|e| Error::io(format!("opening a netfilter netlink socket in {ns}"), e))?;
        Ok(NfTables { sock, seq: 1, buf: vec![0; 64 * 1024], ns })
    }

    /// Commits `msgs` as one transaction; returns once the kernel acked
    /// every message, i.e. the ruleset is in force. The first refusal is the
    /// error, naming the message.
    pub fn commit(&mut self, msgs: &[Msg]) -> Result<()> {
        if msgs.is_empty() {
            return Ok(());
        }
        // Sequence numbers of this batch: begin, the messages, end.
        let first = self.seq.wrapping_add(1);
        self.seq = self.seq.wrapping_add(msgs.len() as u32 + 2);
        let out = batch(msgs, first);
        let sent = self.sock.send(&out, 0).map_err(|e| Error::io(format!("sending an nf_tables batch in {}", self.ns), e))?;
        if sent != out.len() {
            return Err(Error::Other(format!("nf_tables batch in {}: sent {sent} of {} bytes", self.ns, out.len())));
        }
        let mut acked = vec![false; msgs.len()];
        let mut refused: Option<(usize, i32)> = None;
        while acked.iter().any(|a| !a) {
            let n = self.sock.recv(&mut &mut self.buf[..], 0).map_err(|e| {
                let e = if e.kind() == io::ErrorKind::WouldBlock { io::Error::new(io::ErrorKind::TimedOut, "no ack within 5 s") } else { e };
                Error::io(format!("reading nf_tables acks in {}", self.ns), e)
            })?;
            for (ty, seq, errno) in acks(&self.buf[..n]) {
                if ty != NLMSG_ERROR {
                    continue;
                }
                // A refused batch delimiter (seq first-1 or first+n) fails every message.
                let i = seq.wrapping_sub(first) as usize;
                match (i < msgs.len(), errno) {
                    (true, 0) => acked[i] = true,
                    (true, e) => {
                        acked[i] = true;
                        refused.get_or_insert((i, e));
                    }
                    (false, 0) => {}
                    (false, e) => return Err(refusal(&self.ns, "the nf_tables batch", e)),
                }
            }
        }
        match refused {
            None => Ok(()),
            Some((i, e)) => Err(refusal(&self.ns, &msgs[i].what, e)),
        }
    }
}

fn refusal(ns: &str, what: &str, errno: i32) -> Error {
    Error::io(format!("nf_tables in {ns} refused {what}"), io::Error::from_raw_os_error(-errno))
}

/// The (type, sequence, error) of each netlink message in a datagram; the
/// error is NLMSG_ERROR's first field (0: an ack), else 0.
fn acks(mut buf: &[u8]) -> Vec<(u16, u32, i32)> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes(buf[4..6].try_into().expect("2 bytes"));
        let seq = u32::from_ne_bytes(buf[8..12].try_into().expect("4 bytes"));
        let err = if ty == NLMSG_ERROR && len >= 20 { i32::from_ne_bytes(buf[16..20].try_into().expect("4 bytes")) } else { 0 };
        out.push((ty, seq, err));
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_aligned_and_strings_carry_their_nul() {
        let mut a = Attrs::default();
        a.strz(1, "abc");
        assert_eq!(a.0, [8, 0, 1, 0, b'a', b'b', b'c', 0]);
        let mut b = Attrs::default();
        b.put(2, &[6]);
        assert_eq!(b.0, [5, 0, 2, 0, 6, 0, 0, 0], "length unpadded, data padded");
        assert_eq!(comment_udata("ab"), [0, 3, b'a', b'b', 0]);
    }

    #[test]
    fn a_batch_frames_each_message_with_an_ack_between_begin_and_end() {
        let out = batch(&[flush_chain("kaspec_abc123", "faults")], 7);
        let msgs = acks(&out);
        let types: Vec<u16> = msgs.iter().map(|m| m.0).collect();
        assert_eq!(types, [NFNL_MSG_BATCH_BEGIN, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELRULE, NFNL_MSG_BATCH_END]);
        assert_eq!(msgs.iter().map(|m| m.1).collect::<Vec<_>>(), [6, 7, 8]);
        // begin's nfgenmsg names the subsystem, big-endian
        assert_eq!(&out[16..20], &[0, 0, 0, 10]);
        let flags = u16::from_ne_bytes([out[26], out[27]]);
        assert_eq!(flags, NLM_F_REQUEST | NLM_F_ACK);
    }
}
