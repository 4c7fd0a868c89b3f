//! Single-core tests: one [`Swim`] driven by scripted packets and timer calls; every output
//! is checked. Sections cited are `spec/swim.md`'s.

use super::*;
use crate::sim::node_uuid as uuid;

/// A non-zero start, so nothing can assume time 0.
const T0: u64 = 5_000_000_000;
/// Heartbeat and ack timeout of the seed demo (spec §4.1): 1 s and 0.1 s.
const HB: u64 = 1_000_000;
const ACK: u64 = 100_000;
const GEN: u64 = 77;

fn addr(i: usize) -> SocketAddrV4 {
    localhost(3300 + i as u16)
}

fn core_with(gc: GcMode) -> Swim {
    let mut cfg = Config::new(uuid(0), addr(0), GEN);
    cfg.heartbeat_rate = HB;
    cfg.ack_timeout = ACK;
    cfg.gc_mode = gc;
    let mut s = Swim::new(cfg, 42, T0).unwrap();
    s.take_events();
    s
}

fn core() -> Swim {
    core_with(GcMode::On)
}

fn fd_packet(from: usize, kind: FailureDetectionKind, inc: Incarnation) -> Packet {
    Packet {
        meta: Meta {
            version: proto::TARANTOOL_VERSION,
            src: addr(from),
            route: None,
        },
        body: Body {
            src_uuid: uuid(from),
            failure_detection: Some(FailureDetection { kind, incarnation: inc }),
            dissemination: Some(vec![]),
            anti_entropy: Some(vec![]),
            quit: None,
        },
    }
}

fn ping(from: usize, inc: Incarnation) -> Packet {
    fd_packet(from, FailureDetectionKind::Ping, inc)
}

fn ack(from: usize, inc: Incarnation) -> Packet {
    fd_packet(from, FailureDetectionKind::Ack, inc)
}

/// A packet from `from` with only a dissemination section.
fn gossip(from: usize, records: Vec<MemberRecord>) -> Packet {
    Packet {
        meta: Meta {
            version: proto::TARANTOOL_VERSION,
            src: addr(from),
            route: None,
        },
        body: Body {
            src_uuid: uuid(from),
            failure_detection: None,
            dissemination: Some(records),
            anti_entropy: None,
            quit: None,
        },
    }
}

fn rec(i: usize, status: Status, inc: Incarnation, payload: Option<&[u8]>) -> MemberRecord {
    MemberRecord {
        status,
        addr: addr(i),
        uuid: uuid(i),
        incarnation: inc,
        payload: payload.map(<[u8]>::to_vec),
    }
}

fn inc(g: u64, v: u64) -> Incarnation {
    Incarnation::new(g, v)
}

fn mask_of(s: &mut Swim, i: usize) -> u8 {
    s.take_events()
        .iter()
        .filter(|e| e.uuid == uuid(i))
        .fold(0, |m, e| m | e.mask)
}

#[test]
fn new_instance_is_alone() {
    let mut cfg = Config::new(uuid(0), addr(0), GEN);
    cfg.heartbeat_rate = HB;
    let mut s = Swim::new(cfg, 1, T0).unwrap();
    assert_eq!(s.size(), 1);
    let me = s.self_member();
    assert_eq!((me.status(), me.incarnation()), (Status::Alive, inc(GEN, 0)));
    assert!(me.is_payload_up_to_date());
    assert_eq!(
        s.take_events().iter().map(|e| e.mask).collect::<Vec<_>>(),
        vec![event::NEW]
    );
    // §2.2: with only self the round timer does not run.
    assert_eq!(s.next_deadline(), None);
    assert!(s.take_outgoing().is_empty());
}

#[test]
fn add_member_then_first_step_after_one_period() {
    // §1.4 add_member, §2.2 rounds.
    let mut s = core();
    s.add_member(uuid(1), addr(1), T0).unwrap();
    assert_eq!(s.add_member(uuid(1), addr(1), T0), Err(SwimError::UuidExists));
    let m = s.member(&uuid(1)).unwrap();
    assert_eq!(
        (m.status(), m.incarnation(), m.is_payload_up_to_date()),
        (Status::Alive, inc(0, 0), false)
    );
    assert_eq!(mask_of(&mut s, 1), event::NEW);
    assert!(s.take_outgoing().is_empty(), "add_member does not ping");
    assert_eq!(s.next_deadline(), Some(T0 + HB));
    s.handle_timer(T0 + HB - 1);
    assert!(s.take_outgoing().is_empty());
    s.handle_timer(T0 + HB);
    let out = s.take_outgoing();
    assert_eq!(out.len(), 1);
    let p = &out[0].packet;
    assert_eq!(out[0].to, addr(1));
    assert_eq!(
        p.meta,
        Meta {
            version: proto::TARANTOOL_VERSION,
            src: addr(0),
            route: None
        }
    );
    assert_eq!(p.body.src_uuid, uuid(0));
    assert_eq!(
        p.body.failure_detection,
        Some(FailureDetection {
            kind: FailureDetectionKind::Ping,
            incarnation: inc(GEN, 0)
        })
    );
    // Both members are in the dissemination queue (NEW), and anti-entropy has both too.
    assert_eq!(p.body.dissemination.as_ref().unwrap().len(), 2);
    assert_eq!(p.body.anti_entropy.as_ref().unwrap().len(), 2);
    // Anti-entropy carries self's (empty, up-to-date) payload, not the new member's
    // (unknown); dissemination carries none (payload TTD 0: the payload never changed).
    let d = p.body.anti_entropy.as_ref().unwrap();
    let payloads: Vec<_> = d.iter().map(|r| (r.uuid, r.payload.is_some())).collect();
    assert!(payloads.contains(&(uuid(0), true)) && payloads.contains(&(uuid(1), false)));
    assert_eq!(s.next_deadline(), Some(T0 + HB + ACK), "ack ticker armed");
}

#[test]
fn direct_ping_from_unknown_adds_and_acks() {
    // §2.3: an unknown sender is added as a direct definition and acked at meta.src.
    let mut s = core();
    s.handle_packet(ping(1, inc(9, 3)), T0);
    let m = s.member(&uuid(1)).unwrap();
    assert_eq!(
        (m.status(), m.incarnation(), m.addr()),
        (Status::Alive, inc(9, 3), addr(1))
    );
    assert_eq!(mask_of(&mut s, 1), event::NEW);
    let out = s.take_outgoing();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, addr(1));
    assert_eq!(
        out[0].packet.body.failure_detection.unwrap().kind,
        FailureDetectionKind::Ack
    );
}

#[test]
fn stale_ping_is_ignored_entirely() {
    // §2.3: an older incarnation than known: no update, no ack.
    let mut s = core();
    s.handle_packet(ping(1, inc(9, 3)), T0);
    s.take_outgoing();
    s.take_events();
    s.handle_packet(ping(1, inc(9, 2)), T0);
    assert!(s.take_outgoing().is_empty());
    assert!(s.take_events().is_empty());
    assert_eq!(s.stats().dropped_stale, 1);
}

#[test]
fn at_most_one_pending_ack_per_member() {
    let mut s = core();
    s.handle_packet(ping(1, inc(1, 0)), T0);
    s.handle_packet(ping(1, inc(1, 0)), T0);
    assert_eq!(s.take_outgoing().len(), 1);
    assert_eq!(s.stats().acks_coalesced, 1);
    s.handle_packet(ping(1, inc(1, 0)), T0);
    assert_eq!(s.take_outgoing().len(), 1, "a drained ack is no longer pending");
}

#[test]
fn upsert_rules_table() {
    // §2.5 (indirect) and §2.3 (direct). Known member 1 is at {5, 5}, alive, payload "p"
    // up to date. Each row: gc mode, subject, incoming packet, expected status and
    // incarnation of the subject (None: not in the table), events, probes sent.
    struct Row {
        name: &'static str,
        gc: GcMode,
        subject: usize,
        packet: Packet,
        want: Option<(Status, Incarnation)>,
        events: u8,
        probe: bool,
    }
    use Status::*;
    let rows = vec![
        Row {
            name: "unknown left ignored",
            gc: GcMode::Off,
            subject: 2,
            packet: gossip(3, vec![rec(2, Left, inc(1, 0), None)]),
            want: None,
            events: 0,
            probe: false,
        },
        Row {
            name: "unknown dead, gc on: ignored",
            gc: GcMode::On,
            subject: 2,
            packet: gossip(3, vec![rec(2, Dead, inc(1, 0), None)]),
            want: None,
            events: 0,
            probe: false,
        },
        Row {
            name: "unknown dead, gc off: added dead",
            gc: GcMode::Off,
            subject: 2,
            packet: gossip(3, vec![rec(2, Dead, inc(1, 0), None)]),
            want: Some((Dead, inc(1, 0))),
            events: event::NEW,
            probe: false,
        },
        Row {
            name: "unknown alive: probe, not added",
            gc: GcMode::On,
            subject: 2,
            packet: gossip(3, vec![rec(2, Alive, inc(1, 0), None)]),
            want: None,
            events: 0,
            probe: true,
        },
        Row {
            name: "unknown suspected: probe, not added",
            gc: GcMode::On,
            subject: 2,
            packet: gossip(3, vec![rec(2, Suspected, inc(1, 0), None)]),
            want: None,
            events: 0,
            probe: true,
        },
        Row {
            name: "older incarnation ignored",
            gc: GcMode::On,
            subject: 1,
            packet: gossip(3, vec![rec(1, Dead, inc(5, 4), None)]),
            want: Some((Alive, inc(5, 5))),
            events: 0,
            probe: false,
        },
        Row {
            name: "equal incarnation: status grows",
            gc: GcMode::On,
            subject: 1,
            packet: gossip(3, vec![rec(1, Suspected, inc(5, 5), None)]),
            want: Some((Suspected, inc(5, 5))),
            events: event::NEW_STATUS,
            probe: false,
        },
        Row {
            name: "newer version: taken, payload outdated",
            gc: GcMode::On,
            subject: 1,
            packet: gossip(3, vec![rec(1, Alive, inc(5, 6), None)]),
            want: Some((Alive, inc(5, 6))),
            events: event::NEW_VERSION,
            probe: false,
        },
        Row {
            name: "newer generation with status and payload",
            gc: GcMode::On,
            subject: 1,
            packet: gossip(3, vec![rec(1, Dead, inc(6, 0), Some(b"q"))]),
            want: Some((Dead, inc(6, 0))),
            events: event::NEW_GENERATION | event::NEW_VERSION | event::NEW_STATUS | event::NEW_PAYLOAD,
            probe: false,
        },
        Row {
            name: "direct ping, equal incarnation: stays alive, acked",
            gc: GcMode::On,
            subject: 1,
            packet: ping(1, inc(5, 5)),
            want: Some((Alive, inc(5, 5))),
            events: 0,
            probe: false,
        },
        Row {
            name: "quit at equal incarnation: left",
            gc: GcMode::On,
            subject: 1,
            packet: Packet {
                body: Body {
                    quit: Some(inc(5, 5)),
                    failure_detection: None,
                    dissemination: None,
                    anti_entropy: None,
                    ..ping(1, inc(0, 0)).body
                },
                ..ping(1, inc(0, 0))
            },
            want: Some((Left, inc(5, 5))),
            events: event::NEW_STATUS,
            probe: false,
        },
        Row {
            name: "quit with older incarnation ignored",
            gc: GcMode::On,
            subject: 1,
            packet: Packet {
                body: Body {
                    quit: Some(inc(5, 4)),
                    failure_detection: None,
                    dissemination: None,
                    anti_entropy: None,
                    ..ping(1, inc(0, 0)).body
                },
                ..ping(1, inc(0, 0))
            },
            want: Some((Alive, inc(5, 5))),
            events: 0,
            probe: false,
        },
    ];
    for (k, row) in rows.into_iter().enumerate() {
        let mut s = core_with(row.gc);
        s.handle_packet(gossip(3, vec![]), T0); // 3 is unknown: nothing happens
        s.handle_packet(ping(1, inc(5, 5)), T0);
        s.handle_packet(gossip(3, vec![rec(1, Alive, inc(5, 5), Some(b"p"))]), T0);
        assert!(s.member(&uuid(1)).unwrap().is_payload_up_to_date());
        s.take_outgoing();
        s.take_events();
        s.handle_packet(row.packet, T0);
        let got = s.member(&uuid(row.subject)).map(|m| (m.status(), m.incarnation()));
        assert_eq!(got, row.want, "#{k} {}: state", row.name);
        assert_eq!(mask_of(&mut s, row.subject), row.events, "#{k} {}: events", row.name);
        let out = s.take_outgoing();
        let probes = out.iter().filter(|o| o.to == addr(row.subject)).count();
        if row.probe {
            assert_eq!(probes, 1, "#{k} {}: probe", row.name);
            assert_eq!(
                out[0].packet.body.failure_detection.unwrap().kind,
                FailureDetectionKind::Ping
            );
        } else if row.subject == 2 {
            assert_eq!(probes, 0, "#{k} {}: no probe", row.name);
        }
    }
}

#[test]
fn newer_record_without_payload_marks_it_outdated() {
    // §2.5: the bytes are kept, but no longer gossiped; an equal record with a payload
    // brings it up to date again.
    let mut s = core();
    s.handle_packet(gossip(3, vec![]), T0);
    s.handle_packet(ping(1, inc(5, 5)), T0);
    s.handle_packet(gossip(3, vec![rec(1, Status::Alive, inc(5, 5), Some(b"p"))]), T0);
    s.handle_packet(gossip(3, vec![rec(1, Status::Alive, inc(5, 6), None)]), T0);
    let m = s.member(&uuid(1)).unwrap();
    assert_eq!((m.payload(), m.is_payload_up_to_date()), (&b"p"[..], false));
    s.take_events();
    s.handle_packet(gossip(3, vec![rec(1, Status::Alive, inc(5, 6), Some(b"r"))]), T0);
    let m = s.member(&uuid(1)).unwrap();
    assert_eq!((m.payload(), m.is_payload_up_to_date()), (&b"r"[..], true));
    assert_eq!(mask_of(&mut s, 1), event::NEW_PAYLOAD);
}

#[test]
fn gossip_about_self_is_refuted_or_adopted() {
    // §2.6. Each row: incoming record about self, expected own incarnation after.
    let rows = [
        (Status::Alive, inc(GEN, 0), inc(GEN, 0)),             // nothing to do
        (Status::Suspected, inc(GEN, 0), inc(GEN, 1)),         // refute
        (Status::Dead, inc(GEN, 0), inc(GEN, 1)),              // refute
        (Status::Alive, inc(GEN, 4), inc(GEN, 4)),             // adopt a future version
        (Status::Suspected, inc(GEN + 1, 2), inc(GEN + 1, 3)), // adopt, then refute
        (Status::Dead, inc(GEN - 1, 9), inc(GEN, 0)),          // older: ignored
    ];
    for (k, (status, got_inc, want)) in rows.into_iter().enumerate() {
        let mut s = core();
        s.handle_packet(gossip(3, vec![rec(0, status, got_inc, None)]), T0);
        assert_eq!(s.self_member().incarnation(), want, "#{k}");
        assert_eq!(s.self_member().status(), Status::Alive, "#{k}");
    }
}

#[test]
fn quit_about_self_bumps_version() {
    // §2.8: someone quit with our UUID: take its incarnation and add 1.
    let mut s = core();
    let mut p = gossip(0, vec![]);
    p.meta.src = addr(5);
    p.body.dissemination = None;
    p.body.quit = Some(inc(GEN, 3));
    s.handle_packet(p, T0);
    assert_eq!(s.self_member().incarnation(), inc(GEN, 4));
    assert_eq!(s.self_member().status(), Status::Alive);
}

#[test]
fn routing_forward_and_routed_ack() {
    // §2.4, §3.3. A packet for someone else is forwarded with meta.src rewritten; one for
    // us is answered through the same proxy.
    let mut s = core();
    let mut p = ping(1, inc(1, 0));
    p.meta.route = Some(Route {
        src: addr(1),
        dst: addr(2),
    });
    s.handle_packet(p.clone(), T0);
    let out = s.take_outgoing();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, addr(2));
    assert_eq!(out[0].packet.meta.src, addr(0));
    assert_eq!(out[0].packet.meta.route, p.meta.route);
    assert_eq!(out[0].packet.body, p.body, "body unchanged");
    assert_eq!(s.size(), 1, "the proxy learns nobody");

    let mut p = ping(1, inc(1, 0));
    p.meta.src = addr(7); // the proxy
    p.meta.route = Some(Route {
        src: addr(1),
        dst: addr(0),
    });
    s.handle_packet(p, T0);
    assert_eq!(
        s.member(&uuid(1)).unwrap().addr(),
        addr(1),
        "true sender from the route"
    );
    let out = s.take_outgoing();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, addr(7));
    assert_eq!(
        out[0].packet.meta.route,
        Some(Route {
            src: addr(0),
            dst: addr(1)
        })
    );
    assert_eq!(
        out[0].packet.body.failure_detection.unwrap().kind,
        FailureDetectionKind::Ack
    );
}

/// Run the core's timers up to `until`, collecting everything it sends.
fn run(s: &mut Swim, until: u64) -> Vec<(u64, Outgoing)> {
    let mut sent = Vec::new();
    while let Some(t) = s.next_deadline() {
        if t > until {
            break;
        }
        s.handle_timer(t);
        sent.extend(s.take_outgoing().into_iter().map(|o| (t, o)));
    }
    sent
}

#[test]
fn failure_detection_suspect_dead_gc() {
    // §2.3, §2.4: 2 expiries → suspected + 2 indirect pings via helpers at other
    // addresses; 3 more → dead; 2 more with TTD 0 → deleted. Every expiry re-pings.
    let mut s = core_with(GcMode::On);
    for i in 1..=3 {
        s.handle_packet(ping(i, inc(1, 0)), T0);
    }
    // Member 4 shares member 1's address: never a helper for 1.
    let mut p = ping(4, inc(1, 0));
    p.meta.src = addr(1);
    s.handle_packet(p, T0);
    s.take_outgoing();
    s.take_events();
    // Members 2, 3 and 4 keep answering; member 1 is silent.
    let mut t = T0;
    let mut indirect = Vec::new();
    let mut statuses = Vec::new();
    while t < T0 + 60 * HB {
        let Some(next) = s.next_deadline() else { break };
        t = next;
        s.handle_timer(t);
        for o in s.take_outgoing() {
            if o.packet.meta.route.is_some() {
                indirect.push(o.to);
            } else if o.to == addr(1) {
                // Member 4 lives at member 1's address and answers; member 1 does not.
                s.handle_packet(ack(4, inc(1, 0)), t + 1);
                s.take_outgoing();
            } else {
                let who = (2..=4).find(|&i| addr(i) == o.to).unwrap();
                if o.packet.body.failure_detection.map(|f| f.kind) == Some(FailureDetectionKind::Ping) {
                    s.handle_packet(ack(who, inc(1, 0)), t + 1);
                    s.take_outgoing();
                }
            }
        }
        for e in s.take_events() {
            if e.uuid == uuid(1) {
                statuses.push((e.mask, s.member(&uuid(1)).map(|m| m.status())));
            }
        }
        if s.member(&uuid(1)).is_none() {
            break;
        }
    }
    assert_eq!(
        statuses,
        vec![
            (event::NEW_STATUS, Some(Status::Suspected)),
            (event::NEW_STATUS, Some(Status::Dead)),
            (event::DROP, None),
        ]
    );
    indirect.sort();
    assert_eq!(
        indirect,
        vec![addr(2), addr(3)],
        "two helpers, none at the target's address"
    );
    assert_eq!(s.stats().suspicions, 1);
    assert_eq!(s.stats().deaths, 1);
}

#[test]
fn gossiped_suspicion_is_checked_at_once() {
    // Member 2 says member 1 is suspected. We ping member 1 right away (not when our round
    // reaches it); the count restarts at the status change, and 3 expiries make it dead
    // (§2.3), i.e. 3 ack timeouts after the gossip, well before our first round step.
    let mut s = core_with(GcMode::Off);
    s.handle_packet(ping(1, inc(1, 0)), T0);
    s.handle_packet(ping(2, inc(1, 0)), T0);
    s.take_outgoing();
    s.take_events();
    let t = T0 + 10;
    s.handle_packet(gossip(2, vec![rec(1, Status::Suspected, inc(1, 0), None)]), t);
    let out = s.take_outgoing();
    assert_eq!(out.len(), 1, "one ping to the suspect: {out:?}");
    assert_eq!(out[0].to, addr(1));
    assert_eq!(
        out[0].packet.body.failure_detection.map(|f| f.kind),
        Some(FailureDetectionKind::Ping)
    );
    // The ping tells the suspect about the suspicion, so a live one refutes it.
    let told = out[0].packet.body.dissemination.as_ref().unwrap();
    assert!(told.iter().any(|r| r.uuid == uuid(1) && r.status == Status::Suspected));
    assert_eq!(s.member(&uuid(1)).unwrap().status(), Status::Suspected);
    run(&mut s, t + 3 * ACK - 1);
    assert_eq!(s.member(&uuid(1)).unwrap().status(), Status::Suspected);
    run(&mut s, t + 3 * ACK);
    assert_eq!(s.member(&uuid(1)).unwrap().status(), Status::Dead);
    assert!(t + 3 * ACK < T0 + HB, "dead before the first round step");

    // A live suspect's ack clears it at once (direct contact, §2.3).
    let mut s = core_with(GcMode::Off);
    s.handle_packet(ping(1, inc(1, 0)), T0);
    s.handle_packet(ping(2, inc(1, 0)), T0);
    s.take_outgoing();
    s.handle_packet(gossip(2, vec![rec(1, Status::Suspected, inc(1, 0), None)]), t);
    s.take_outgoing();
    s.handle_packet(ack(1, inc(1, 0)), t + 100);
    assert_eq!(s.member(&uuid(1)).unwrap().status(), Status::Alive);
    // Gossip about an already suspected member sends nothing more.
    s.handle_packet(gossip(2, vec![rec(1, Status::Suspected, inc(1, 0), None)]), t + 200);
    s.take_outgoing();
    s.handle_packet(gossip(2, vec![rec(1, Status::Suspected, inc(1, 0), None)]), t + 300);
    assert!(s.take_outgoing().is_empty());
}

#[test]
fn dead_member_is_pinged_forever_with_gc_off() {
    // §2.3 and §5.9: with GC off a dead member stays and gets a ping every ack timeout.
    let mut s = core_with(GcMode::Off);
    s.handle_packet(ping(1, inc(1, 0)), T0);
    s.take_outgoing();
    let sent = run(&mut s, T0 + 30 * HB);
    assert_eq!(s.member(&uuid(1)).unwrap().status(), Status::Dead);
    let late = sent
        .iter()
        .filter(|(t, o)| *t > T0 + 20 * HB && o.to == addr(1))
        .count();
    // 10 s of ack ticks at 0.1 s, each re-pinging, plus the round steps.
    assert!(late >= 95, "pings to the dead member in the last 10 s: {late}");
}

#[test]
fn ack_clears_the_wait() {
    let mut s = core();
    s.handle_packet(ping(1, inc(1, 0)), T0);
    s.take_outgoing();
    run(&mut s, T0 + HB);
    s.handle_packet(ack(1, inc(1, 0)), T0 + HB + 10);
    assert_eq!(s.member(&uuid(1)).unwrap().unacked_pings(), 0);
    // No expiry follows: the member stays alive through ticks until the next step.
    run(&mut s, T0 + 2 * HB - 1);
    assert_eq!(s.member(&uuid(1)).unwrap().status(), Status::Alive);
    assert_eq!(s.member(&uuid(1)).unwrap().unacked_pings(), 0);
}

#[test]
fn packet_is_filled_to_1440() {
    // §4.3: 40 extra members filled the packet with 26 dissemination records, 0 anti-entropy.
    let mut s = core();
    for i in 1..=40 {
        s.add_member(uuid(i), addr(i), T0).unwrap();
    }
    s.take_outgoing();
    let sent = run(&mut s, T0 + HB);
    let p = &sent[0].1.packet;
    assert_eq!(p.body.dissemination.as_ref().unwrap().len(), 26);
    assert_eq!(p.body.anti_entropy.as_ref().unwrap().len(), 0);
    let size = packet_size(p);
    assert!(
        size <= MAX_PACKET_SIZE && size + proto::RECORD_SIZE > MAX_PACKET_SIZE,
        "size {size}"
    );
    // A 1200-byte payload still fits (1399-byte packets in §4.3).
    let mut s = core();
    s.set_payload(&[7; 1200], T0).unwrap();
    s.add_member(uuid(1), addr(1), T0).unwrap();
    let sent = run(&mut s, T0 + HB);
    assert!(packet_size(&sent[0].1.packet) <= MAX_PACKET_SIZE);
    assert!(sent[0]
        .1
        .packet
        .body
        .dissemination
        .as_ref()
        .unwrap()
        .iter()
        .any(|r| r.payload.is_some()));
}

#[test]
fn ttd_counts_down_every_step_and_left_is_deleted() {
    // §2.5: status TTD ceil(log2 N) + 1, minus one per step, sent or not; a left member
    // leaves the table at 0.
    let mut s = core();
    for i in 1..=4 {
        s.add_member(uuid(i), addr(i), T0).unwrap();
    }
    let mut q = ping(1, inc(0, 0)).body;
    q.failure_detection = None;
    q.quit = Some(inc(0, 0));
    s.handle_packet(
        Packet {
            meta: ping(1, inc(0, 0)).meta,
            body: q,
        },
        T0,
    );
    assert_eq!(s.member(&uuid(1)).unwrap().status(), Status::Left);
    assert_eq!(s.member(&uuid(1)).unwrap().status_ttd(), 4); // N = 5: ceil(log2 5) + 1
    s.take_events();
    for step in 1..=3 {
        run(&mut s, T0 + step * HB);
        assert_eq!(s.member(&uuid(1)).unwrap().status_ttd(), 4 - step as u32, "step {step}");
    }
    run(&mut s, T0 + 4 * HB);
    assert!(s.member(&uuid(1)).is_none());
    assert_eq!(mask_of(&mut s, 1), event::DROP);
}

#[test]
fn quit_sends_to_everyone() {
    // §2.8: one {uuid, quit} packet to every member, then nothing.
    let mut s = core();
    for i in 1..=5 {
        s.add_member(uuid(i), addr(i), T0).unwrap();
    }
    s.set_payload(b"x", T0).unwrap();
    s.quit(T0);
    let out = s.take_outgoing();
    let mut to: Vec<_> = out.iter().map(|o| o.to).collect();
    to.sort();
    assert_eq!(to, (1..=5).map(addr).collect::<Vec<_>>());
    for o in &out {
        assert_eq!(o.packet.body.quit, Some(inc(GEN, 1)));
        assert!(o.packet.body.failure_detection.is_none() && o.packet.body.dissemination.is_none());
        assert_eq!(packet_size(&o.packet), 59);
    }
    assert_eq!(s.self_member().status(), Status::Left);
    assert_eq!(s.next_deadline(), None);
    s.handle_packet(ping(1, inc(1, 0)), T0);
    assert!(s.take_outgoing().is_empty());
}

#[test]
fn set_payload_bumps_version_every_call_and_events_batch() {
    // §1.4, §1.6: three calls → one self event with payload + version bits.
    let mut s = core();
    for _ in 0..3 {
        s.set_payload(b"same", T0).unwrap();
    }
    assert_eq!(s.self_member().incarnation(), inc(GEN, 3));
    let ev = s.take_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].mask, event::NEW_PAYLOAD | event::NEW_VERSION);
    assert_eq!(s.set_payload(&[0; 1201], T0), Err(SwimError::PayloadTooBig));
    s.set_payload(b"same", T0).unwrap();
    assert_eq!(
        s.take_events()[0].mask,
        event::NEW_VERSION,
        "same bytes: no NEW_PAYLOAD"
    );
}

#[test]
fn add_then_remove_is_not_reported() {
    // §1.6: NEW and DROP in one batch cancel out.
    let mut s = core();
    s.add_member(uuid(1), addr(1), T0).unwrap();
    s.remove_member(uuid(1), T0).unwrap();
    assert!(s.take_events().is_empty());
    assert_eq!(s.remove_member(uuid(0), T0), Err(SwimError::RemoveSelf));
    assert_eq!(s.remove_member(uuid(9), T0), Ok(()));
    // The timer stops with self alone (§2.2).
    assert_eq!(s.next_deadline(), None);
    // Removal of a known member reports DROP with its last state.
    s.add_member(uuid(1), addr(1), T0).unwrap();
    s.take_events();
    s.remove_member(uuid(1), T0).unwrap();
    let ev = s.take_events();
    assert_eq!(ev[0].mask, event::DROP);
    assert_eq!(ev[0].last.as_ref().unwrap().addr, addr(1));
}

#[test]
fn uuid_and_address_change() {
    // §2.9.
    let mut s = core();
    s.add_member(uuid(1), addr(1), T0).unwrap();
    s.take_events();
    s.set_address(addr(9), T0);
    assert_eq!(s.self_member().incarnation(), inc(GEN, 1));
    assert_eq!(mask_of(&mut s, 0), event::NEW_URI | event::NEW_VERSION);
    assert_eq!(s.set_uuid(uuid(1), T0), Err(SwimError::UuidExists));
    s.set_uuid(uuid(5), T0).unwrap();
    assert_eq!(s.uuid(), uuid(5));
    assert_eq!(s.size(), 3);
    // Neither incarnation moves on a UUID change (as Tarantool 2.6.0): left already wins.
    let old = s.member(&uuid(0)).unwrap();
    assert_eq!((old.status(), old.incarnation()), (Status::Left, inc(GEN, 1)));
    let new = s.self_member();
    assert_eq!(
        (new.status(), new.incarnation(), new.addr()),
        (Status::Alive, inc(GEN, 1), addr(9))
    );
    // The old self is gossiped as left, then deleted at TTD 0.
    run(&mut s, T0 + 10 * HB);
    assert!(s.member(&uuid(0)).is_none());
}

#[test]
fn lifeguard_dynamic_suspicion_is_longer_and_confirmations_shorten_it() {
    let dead_after = |confirm: bool| {
        let mut cfg = Config::new(uuid(0), addr(0), GEN);
        cfg.heartbeat_rate = HB;
        cfg.ack_timeout = ACK;
        cfg.lifeguard = Lifeguard {
            local_health: false,
            dynamic_suspicion: true,
        };
        let mut s = Swim::new(cfg, 42, T0).unwrap();
        s.handle_packet(ping(1, inc(1, 0)), T0);
        let mut confirmed = false;
        loop {
            let t = s.next_deadline().unwrap();
            s.handle_timer(t);
            s.take_outgoing();
            let st = s.member(&uuid(1)).unwrap().status();
            if st == Status::Suspected && confirm && !confirmed {
                for k in 2..5 {
                    s.handle_packet(gossip(k, vec![rec(1, Status::Suspected, inc(1, 0), None)]), t);
                }
                s.take_outgoing();
                confirmed = true;
            }
            if st == Status::Dead {
                return t - T0;
            }
        }
    };
    let (lonely, confirmed) = (dead_after(false), dead_after(true));
    assert!(confirmed < lonely, "confirmed {confirmed} µs, lonely {lonely} µs");
}

#[test]
fn no_panic_on_random_packets() {
    // Robustness (§2.10): whatever a decoded packet holds, the core does not panic.
    let seed = crate::sim::seed_from_env(0xF00D);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut s = core_with(GcMode::Off);
    let any_addr = |rng: &mut SmallRng| {
        let ip = [Ipv4Addr::LOCALHOST, Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(10, 0, 0, 1)][rng.random_range(0..3)];
        SocketAddrV4::new(ip, [0, 3300, 3301, 3302][rng.random_range(0..4)])
    };
    let any_uuid = |rng: &mut SmallRng| [Uuid::nil(), uuid(0), uuid(1), uuid(2), uuid(3)][rng.random_range(0..5)];
    let any_inc = |rng: &mut SmallRng| {
        let v = [0, 1, GEN, u64::MAX - 1, u64::MAX];
        inc(v[rng.random_range(0..5)], v[rng.random_range(0..5)])
    };
    let any_status = |rng: &mut SmallRng| Status::from_wire(rng.random_range(0..4)).unwrap();
    let mut t = T0;
    for _ in 0..20_000 {
        t += rng.random_range(0..50_000);
        let records = |rng: &mut SmallRng| {
            let n = rng.random_range(0..4);
            (0..n)
                .map(|_| MemberRecord {
                    status: any_status(rng),
                    addr: any_addr(rng),
                    uuid: any_uuid(rng),
                    incarnation: any_inc(rng),
                    payload: [None, Some(vec![]), Some(vec![1; 1300])][rng.random_range(0..3)].clone(),
                })
                .collect::<Vec<_>>()
        };
        let p = Packet {
            meta: Meta {
                version: 1,
                src: any_addr(&mut rng),
                route: rng.random_bool(0.2).then(|| Route {
                    src: any_addr(&mut rng),
                    dst: any_addr(&mut rng),
                }),
            },
            body: Body {
                src_uuid: any_uuid(&mut rng),
                failure_detection: rng.random_bool(0.7).then(|| FailureDetection {
                    kind: if rng.random_bool(0.5) {
                        FailureDetectionKind::Ping
                    } else {
                        FailureDetectionKind::Ack
                    },
                    incarnation: any_inc(&mut rng),
                }),
                dissemination: rng.random_bool(0.7).then(|| records(&mut rng)),
                anti_entropy: rng.random_bool(0.7).then(|| records(&mut rng)),
                quit: rng.random_bool(0.1).then(|| any_inc(&mut rng)),
            },
        };
        s.handle_packet(p, t);
        if rng.random_bool(0.3) {
            s.handle_timer(t);
        }
        for o in s.take_outgoing() {
            assert!(
                packet_size(&o.packet) <= MAX_PACKET_SIZE,
                "seed {seed}: {:?}",
                o.packet.meta
            );
        }
        s.take_events();
    }
}

/// Gossip about an unknown member sends one probe, however many packets name it while the
/// answer is awaited; an unanswered probe is sent again at the round steps after its
/// deadline, [`PROBE_ATTEMPTS`] in all, then the next gossip starts over; an answer ends it.
/// `probe_member` is never coalesced.
#[test]
fn gossip_probes_coalesced_and_retried() {
    let mut s = core();
    // Member 3 is known, so rounds run (a step every HB from T0 + HB).
    s.handle_packet(ping(3, inc(1, 0)), T0);
    s.take_outgoing();
    let probes = |out: Vec<Outgoing>| out.iter().filter(|o| o.to == addr(2)).count();
    s.handle_packet(gossip(3, vec![rec(2, Status::Alive, inc(1, 0), None)]), T0);
    assert_eq!(probes(s.take_outgoing()), 1);
    s.handle_packet(gossip(3, vec![rec(2, Status::Alive, inc(1, 0), None)]), T0 + ACK - 1);
    assert_eq!(probes(s.take_outgoing()), 0);
    assert_eq!(s.stats().probes_coalesced, 1);
    s.probe_member(addr(2), T0 + ACK - 1);
    assert_eq!(probes(s.take_outgoing()), 1);
    s.handle_packet(gossip(3, vec![rec(2, Status::Suspected, inc(1, 0), None)]), T0 + ACK);
    assert_eq!(probes(s.take_outgoing()), 0, "still waiting for the retry");
    let retries = |s: &mut Swim, until| probes(run(s, until).into_iter().map(|(_, o)| o).collect());
    assert_eq!(retries(&mut s, T0 + HB), 1, "second attempt at the first step");
    assert_eq!(retries(&mut s, T0 + 2 * HB), 1, "third attempt");
    assert_eq!(retries(&mut s, T0 + 3 * HB), 0, "given up");
    assert_eq!(s.stats().probes_retried, u64::from(PROBE_ATTEMPTS - 1));
    s.handle_packet(gossip(3, vec![rec(2, Status::Alive, inc(1, 0), None)]), T0 + 3 * HB + 1);
    assert_eq!(probes(s.take_outgoing()), 1, "new gossip, new probe");
    // The answer adds the member and ends the probing: no more retries.
    s.handle_packet(ack(2, inc(1, 0)), T0 + 3 * HB + 2);
    assert!(s.member(&uuid(2)).is_some());
    run(&mut s, T0 + 6 * HB);
    assert_eq!(s.stats().probes_retried, u64::from(PROBE_ATTEMPTS - 1));
}

/// A push (`news.rs`): a packet with no failure detection and one dissemination record.
fn pushed(o: &Outgoing) -> Option<&MemberRecord> {
    let b = &o.packet.body;
    match (&b.failure_detection, &b.dissemination, &b.anti_entropy, &b.quit) {
        (None, Some(d), None, None) if d.len() == 1 => Some(&d[0]),
        _ => None,
    }
}

/// Members 1..=n known (they pinged us), and a clean record: `news::CLEAN_ACKS` acks just
/// seen, no miss. Returns the core and the time.
fn clean_core(n: usize, push_news: bool) -> (Swim, u64) {
    let mut s = core_with(GcMode::Off);
    s.set_push_news(push_news);
    for i in 1..=n {
        s.handle_packet(ping(i, inc(1, 0)), T0);
    }
    for k in 0..crate::swim::news::CLEAN_ACKS {
        s.handle_packet(ack(2 + k % (n - 1), inc(1, 0)), T0 + 1 + k as u64);
    }
    s.take_outgoing();
    s.take_events();
    (s, T0 + 100)
}

/// Runs the timers until `until`, answering every ping except those to member 1, and
/// returns the pushes sent with their time.
fn run_silent_1(s: &mut Swim, from: u64, until: u64) -> Vec<(u64, SocketAddrV4, MemberRecord)> {
    run_silent(s, from, until, &[1])
}

/// [`run_silent_1`] with the given members silent.
fn run_silent(s: &mut Swim, from: u64, until: u64, silent: &[usize]) -> Vec<(u64, SocketAddrV4, MemberRecord)> {
    let mut pushes = Vec::new();
    let mut t = from;
    while let Some(next) = s.next_deadline() {
        if next > until {
            break;
        }
        t = t.max(next);
        s.handle_timer(t);
        let mut queue = s.take_outgoing();
        while let Some(o) = queue.pop() {
            if let Some(r) = pushed(&o) {
                pushes.push((t, o.to, r.clone()));
                continue;
            }
            let is_ping = o.packet.body.failure_detection.map(|f| f.kind) == Some(FailureDetectionKind::Ping);
            if is_ping && o.packet.meta.route.is_none() && !silent.iter().any(|&m| o.to == addr(m)) {
                let who = (2..20).find(|&i| addr(i) == o.to).expect("a known member");
                s.handle_packet(ack(who, inc(1, 0)), t + 1);
                queue.extend(s.take_outgoing());
            }
        }
    }
    pushes
}

#[test]
fn a_clean_member_pushes_its_suspicion_to_a_few_and_its_verdict_to_all() {
    let (mut s, t) = clean_core(5, true);
    let pushes = run_silent_1(&mut s, t, t + 20 * HB);
    assert_eq!(s.member(&uuid(1)).unwrap().status(), Status::Dead);
    let suspicion: Vec<_> = pushes.iter().filter(|p| p.2.status == Status::Suspected).collect();
    let verdict: Vec<_> = pushes.iter().filter(|p| p.2.status == Status::Dead).collect();
    assert_eq!(
        suspicion.len() + verdict.len(),
        pushes.len(),
        "only news about member 1: {pushes:?}"
    );
    // The suspicion: PUSH_FANOUT distinct alive members, never the suspect, at once.
    assert_eq!(suspicion.len(), PUSH_FANOUT);
    let mut to: Vec<_> = suspicion.iter().map(|p| p.1).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), PUSH_FANOUT);
    assert!(!to.contains(&addr(1)) && !to.contains(&addr(0)));
    assert!(suspicion
        .iter()
        .all(|p| p.2 == rec(1, Status::Suspected, inc(1, 0), None)));
    // The verdict: every alive member but the dead one.
    let mut to: Vec<_> = verdict.iter().map(|p| p.1).collect();
    to.sort();
    assert_eq!(to, vec![addr(2), addr(3), addr(4), addr(5)]);
    assert!(verdict.iter().all(|p| p.2 == rec(1, Status::Dead, inc(1, 0), None)));
    assert_eq!(s.stats().pushes_sent, (PUSH_FANOUT + 4) as u64);
    // Each went out when the status changed: the suspicion 2 misses before the verdict's 3.
    assert!(suspicion.iter().all(|p| p.0 == suspicion[0].0));
    assert!(verdict.iter().all(|p| p.0 > suspicion[0].0 + 2 * ACK));
}

#[test]
fn no_push_without_a_clean_record_or_when_turned_off() {
    // Turned off: the same run sends no push.
    let (mut s, t) = clean_core(5, false);
    assert!(run_silent_1(&mut s, t, t + 20 * HB).is_empty());
    assert_eq!(s.member(&uuid(1)).unwrap().status(), Status::Dead);
    // Too few acks seen: a member that just started has no record to speak of.
    let mut s = core_with(GcMode::Off);
    for i in 1..=5 {
        s.handle_packet(ping(i, inc(1, 0)), T0);
    }
    s.take_outgoing();
    assert!(run_silent_1(&mut s, T0, T0 + 20 * HB).is_empty());
    assert_eq!(s.member(&uuid(1)).unwrap().status(), Status::Dead);
    // A recent miss about another member: our own link may be the problem.
    let (mut s, t) = clean_core(5, true);
    s.handle_packet(gossip(3, vec![rec(2, Status::Suspected, inc(1, 0), None)]), t);
    assert!(s.take_outgoing().iter().any(|o| o.to == addr(2)), "member 2 is checked");
    s.handle_timer(t + ACK);
    s.take_outgoing();
    s.handle_packet(ack(2, inc(1, 0)), t + ACK + 1);
    assert_eq!(
        s.member(&uuid(2)).unwrap().status(),
        Status::Alive,
        "member 2 answered late"
    );
    assert!(run_silent_1(&mut s, t + ACK + 2, t + 15 * HB).is_empty());
    assert_eq!(s.member(&uuid(1)).unwrap().status(), Status::Dead);
}

/// With gc off a dead member is pinged forever and never answers; those misses are no sign
/// of a bad link, so the next death is pushed too (the benchmark's second victim was not).
#[test]
fn pinging_a_dead_member_keeps_the_record_clean() {
    let (mut s, t) = clean_core(8, true);
    let first = run_silent_1(&mut s, t, t + 40 * HB);
    assert_eq!(s.member(&uuid(1)).unwrap().status(), Status::Dead);
    assert!(first.iter().any(|p| p.2.status == Status::Dead));
    let t = t + 40 * HB;
    let second = run_silent(&mut s, t, t + 40 * HB, &[1, 2]);
    assert_eq!(s.member(&uuid(2)).unwrap().status(), Status::Dead);
    let verdicts: Vec<_> = second
        .iter()
        .filter(|p| p.2.uuid == uuid(2) && p.2.status == Status::Dead)
        .collect();
    assert!(!verdicts.is_empty(), "the second death is pushed: {second:?}");
}

#[test]
fn news_heard_from_others_is_not_pushed_but_a_refutation_is() {
    let (mut s, t) = clean_core(5, true);
    // Death and suspicion told by member 2: adopted, not pushed.
    s.handle_packet(gossip(2, vec![rec(3, Status::Dead, inc(1, 0), None)]), t);
    s.handle_packet(gossip(2, vec![rec(4, Status::Suspected, inc(1, 0), None)]), t + 1);
    assert_eq!(s.member(&uuid(3)).unwrap().status(), Status::Dead);
    assert!(s.take_outgoing().iter().all(|o| pushed(o).is_none()));
    // A suspicion of ourselves: refuted, and the refutation pushed to PUSH_FANOUT members.
    s.handle_packet(gossip(2, vec![rec(0, Status::Suspected, inc(GEN, 0), None)]), t + 2);
    let out = s.take_outgoing();
    let refutations: Vec<_> = out.iter().filter_map(|o| pushed(o).map(|r| (o.to, r))).collect();
    assert_eq!(refutations.len(), PUSH_FANOUT, "{out:?}");
    assert!(refutations.iter().all(|(to, r)| *to != addr(0)
        && *to != addr(3)
        && r.uuid == uuid(0)
        && r.status == Status::Alive
        && r.incarnation == inc(GEN, 1)));
}

/// Member 1 (alone with us, so no indirect pings) has crashed: every ping to it is refused
/// 5 µs after it leaves, or lost when `refuse` is false. Returns the times of the pings to
/// it up to its death and the times it became suspected and dead.
fn ping_a_closed_port(count_refusals: bool, refuse: bool) -> (Vec<u64>, u64, u64, Swim) {
    let mut s = core_with(GcMode::Off);
    s.set_count_refusals(count_refusals);
    s.handle_packet(ping(1, inc(1, 0)), T0);
    s.take_outgoing();
    s.take_events();
    let (mut pings, mut suspected, mut dead) = (Vec::new(), 0, 0);
    while dead == 0 {
        let t = s.next_deadline().unwrap();
        assert!(t < T0 + 10 * HB, "never declared dead");
        s.handle_timer(t);
        let mut inputs = vec![t];
        for o in s.take_outgoing() {
            if o.to == addr(1) && o.packet.body.failure_detection.is_some() {
                pings.push(t);
                if refuse {
                    inputs.push(t + 5);
                }
            }
        }
        for (k, &at) in inputs.iter().enumerate() {
            if k > 0 {
                s.handle_refused(addr(1), at);
            }
            for e in s.take_events() {
                match s.member(&e.uuid).map(|m| m.status()) {
                    Some(Status::Suspected) if suspected == 0 => suspected = at,
                    Some(Status::Dead) => dead = at,
                    _ => {}
                }
            }
        }
    }
    (pings, suspected, dead, s)
}

#[test]
fn a_refused_ping_is_missed_at_once_and_the_pings_keep_their_pace() {
    let (timed_out, suspected, dead, s) = ping_a_closed_port(true, false);
    let first = timed_out[0];
    assert_eq!(
        (suspected, dead),
        (first + 2 * ACK, first + 5 * ACK),
        "without refusals"
    );
    assert_eq!(s.stats().pings_refused, 0);

    let (refused, suspected, dead, s) = ping_a_closed_port(true, true);
    assert_eq!(refused[0], first, "the first ping goes out at the same round step");
    // Two misses make it suspected and three more dead, as always; each is counted when
    // its refusal comes instead of an ack timeout after its ping.
    assert_eq!(suspected, first + ACK + 5);
    assert_eq!(dead, first + 4 * ACK + 5);
    assert_eq!(s.stats().pings_refused, 5);
    // The same pings, one ack timeout apart, as without refusals.
    assert_eq!(refused, timed_out[..5].to_vec());
    assert!(refused.windows(2).all(|w| w[1] - w[0] == ACK), "{refused:?}");

    let (_, suspected, dead, s) = ping_a_closed_port(false, true);
    assert_eq!(
        (suspected, dead),
        (first + 2 * ACK, first + 5 * ACK),
        "count_refusals = false"
    );
    assert_eq!(s.stats().pings_refused, 0);
}

#[test]
fn a_refusal_counts_once_per_ping_and_only_for_a_waiting_member() {
    let mut s = core_with(GcMode::Off);
    s.handle_packet(ping(1, inc(1, 0)), T0);
    s.handle_packet(ping(2, inc(1, 0)), T0);
    s.take_outgoing();
    // Nobody waits for an ack yet: a refusal (of our ack, say) counts nothing.
    s.handle_refused(addr(1), T0 + 10);
    assert_eq!(s.member(&uuid(1)).unwrap().unacked_pings(), 0);
    // The first round step pings one of them; two refusals of that ping count one miss.
    let t = s.next_deadline().unwrap();
    s.handle_timer(t);
    let to = s.take_outgoing()[0].to;
    let (pinged, other) = if to == addr(1) { (1, 2) } else { (2, 1) };
    s.handle_refused(addr(pinged), t + 5);
    s.handle_refused(addr(pinged), t + 6);
    s.handle_refused(addr(other), t + 7);
    assert_eq!(s.member(&uuid(pinged)).unwrap().unacked_pings(), 1);
    assert_eq!(s.member(&uuid(other)).unwrap().unacked_pings(), 0);
    assert_eq!(s.stats().pings_refused, 1);
    // An ack still clears it: the port may have been reopened since.
    s.handle_packet(ack(pinged, inc(2, 0)), t + 50);
    assert_eq!(s.member(&uuid(pinged)).unwrap().unacked_pings(), 0);
    assert_eq!(s.member(&uuid(pinged)).unwrap().status(), Status::Alive);
    // The refused wait is gone with the ack: its deadline counts nothing more.
    run(&mut s, t + 2 * ACK);
    assert_eq!(s.member(&uuid(pinged)).unwrap().unacked_pings(), 0);
}
