//! The verdict record as JSON (one object per line), in the field names that
//! docs/verdicts.md and docs/verdict.schema.json define. Runs on the exporter
//! thread: allocation here is per session, never per packet.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use crate::session::{PointId, PointState, Role};
use crate::tcp::{DirState, SegEvent};
use crate::verdict::Record;

/// Version of the record layout (the `schema` field). Bumped with every change of
/// the fields, added ones included: docs/verdict.schema.json is strict per version.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct Endpoint {
    ip: String,
    port: u16,
}

#[derive(Serialize)]
struct Event {
    ts: String,
    seq: u32,
    ack: u32,
    ttl: u8,
    ip_id: Option<u16>,
    payload_len: u32,
}

impl From<&SegEvent> for Event {
    fn from(e: &SegEvent) -> Event {
        Event {
            ts: e.ts.to_string(),
            seq: e.seq,
            ack: e.ack,
            ttl: e.ttl,
            ip_id: e.ip_id,
            payload_len: e.payload_len,
        }
    }
}

#[derive(Serialize)]
struct Dir {
    packets: u32,
    bytes: u64,
    payload_bytes: u64,
    syn: Option<Event>,
    fin: Option<Event>,
    rst: Option<Event>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_rst: Option<Event>,
    syn_count: u16,
    fin_count: u16,
    rst_count: u16,
    retransmissions: u32,
    data_after_rst: u32,
    acked_unseen: u32,
    ttl: u8,
    ttl_min: u8,
    ttl_max: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    mss: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wscale: Option<u8>,
}

impl From<&DirState> for Dir {
    fn from(d: &DirState) -> Dir {
        Dir {
            packets: d.packets,
            bytes: d.bytes,
            payload_bytes: d.payload_bytes,
            syn: d.syn.as_ref().map(Event::from),
            fin: d.fin.as_ref().map(Event::from),
            rst: d.rst.as_ref().map(Event::from),
            last_rst: if d.rst_count > 1 {
                d.last_rst.as_ref().map(Event::from)
            } else {
                None
            },
            syn_count: d.syn_count,
            fin_count: d.fin_count,
            rst_count: d.rst_count,
            retransmissions: d.retransmissions,
            data_after_rst: d.data_after_rst,
            acked_unseen: d.acked_unseen,
            ttl: d.ttl_first,
            ttl_min: d.ttl_min,
            ttl_max: d.ttl_max,
            mss: d.syn.and((d.mss != 0).then_some(d.mss)),
            wscale: d.wscale,
        }
    }
}

#[derive(Serialize)]
struct Tcp {
    client: Dir,
    server: Dir,
}

#[derive(Serialize)]
struct Point {
    packets: u64,
    bytes: u64,
    fin: Vec<&'static str>,
    rst: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<u16>,
    #[serde(skip_serializing_if = "is_zero")]
    snaplen_cut: u32,
    tcp: Tcp,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

#[derive(Serialize)]
struct Json<'a> {
    schema: u32,
    session_id: String,
    ts_start: String,
    ts_end: String,
    client: Endpoint,
    server: Endpoint,
    roles: &'static str,
    verdict: &'static str,
    end_reason: &'static str,
    points: BTreeMap<&'a str, Point>,
    evidence: Vec<String>,
}

fn point_json(r: &Record, p: &PointState) -> Point {
    let c = r.session.side_of(Role::Client).index();
    let s = r.session.side_of(Role::Server).index();
    let roles_with = |f: &dyn Fn(&DirState) -> bool| {
        [(c, Role::Client), (s, Role::Server)]
            .into_iter()
            .filter(|(d, _)| f(&p.dirs[*d]))
            .map(|(_, role)| role.as_str())
            .collect::<Vec<_>>()
    };
    Point {
        packets: u64::from(p.dirs[0].packets) + u64::from(p.dirs[1].packets),
        bytes: p.dirs[0].bytes + p.dirs[1].bytes,
        fin: roles_with(&|d| d.fin_count > 0),
        rst: roles_with(&|d| d.rst_count > 0),
        vlan: p.vlan,
        snaplen_cut: p.snaplen_cut,
        tcp: Tcp {
            client: Dir::from(&p.dirs[c]),
            server: Dir::from(&p.dirs[s]),
        },
    }
}

/// Writes one record as a JSON line. `point_names[i]` names point `i`.
pub fn write_record<W: Write>(out: &mut W, r: &Record, point_names: &[String]) -> io::Result<()> {
    let name = |id: PointId| {
        point_names
            .get(usize::from(id.0))
            .cloned()
            .unwrap_or_else(|| format!("point{}", id.0))
    };
    let client = r.key.endpoint(r.session.client);
    let server = r.key.endpoint(r.session.client.other());
    let json = Json {
        schema: SCHEMA_VERSION,
        session_id: format!("{:016x}", r.session_id),
        ts_start: r.session.first_ts.to_string(),
        ts_end: r.session.last_ts.to_string(),
        client: Endpoint {
            ip: client.ip().to_string(),
            port: client.port,
        },
        server: Endpoint {
            ip: server.ip().to_string(),
            port: server.port,
        },
        roles: r.session.roles.as_str(),
        verdict: r.verdict.as_str(),
        end_reason: r.end.as_str(),
        points: r
            .points()
            .map(|(id, p)| {
                (
                    point_names
                        .get(usize::from(id.0))
                        .map_or("?", String::as_str),
                    point_json(r, p),
                )
            })
            .collect(),
        evidence: r.evidence.iter().map(|e| e.render(&name)).collect(),
    };
    serde_json::to_writer(&mut *out, &json)?;
    out.write_all(b"\n")
}
