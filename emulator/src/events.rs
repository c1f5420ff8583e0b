//! `events` timing mode: integer-tick discrete-event simulation of the chip.
//!
//! Within one tick, events run in phases: (0) release rounds of the cores' spike schedulers,
//! which emit one packet per (spike, destination core); (1) packet movement over the mesh
//! (XY routes, per-hop latency, link bandwidth and buffers); (2) completion of synaptic
//! processing in the cores (one packet at a time, in arrival order, `syn_op_ticks` per
//! synapse); (3) the fire phase of every neuron that received input in this tick. Events of
//! the same tick and phase run in the order they were scheduled (first in, first out). A spike fired at tick `t` is
//! released at `t + 1` at the earliest, so on a chip with zero costs a tick is exactly a forward
//! step of `steps` mode, and the two modes agree spike for spike.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::arith::Arith;
use crate::chip::{ChipConfig, NeuronUpdate, Overflow};
use crate::compiled::Compiled;
use crate::error::{Error, Result};
use crate::hash::frame_prefix;
use crate::input::SampleInput;
use crate::options::{InputMode, RunOptions};
use crate::result::SampleResult;
use crate::state::{State, When};

const RELEASE: u8 = 0;
const ARRIVE: u8 = 1;
const SYN_DONE: u8 = 2;
const FIRE: u8 = 3;

#[derive(Debug, Clone, Copy)]
struct Packet {
    src: u32,
    count: u32,
    /// Segment (destination core) of the source's synapses.
    seg: u32,
    /// Its destination core, found once at the release (at every hop it cost three dependent
    /// loads from the synapse arrays: a sixth of a congested run).
    dst: u32,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Release(u32),
    /// A packet at a router that holds no slot yet: injected by its source, or at the end of a
    /// route over free links.
    Arrive(Packet, u32),
    /// Backpressure: a packet that crossed a link into a router where a slot of its next
    /// buffer is held for it.
    Hop(Packet, u32),
    /// Backpressure: a link may send the packets at the head of its buffer.
    Send(u32),
    SynDone(u32),
    Fire,
}

/// Backpressure: a buffer on the mesh, the queue in front of one directed link
/// (`router * 4 + direction`) or a core's input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Buf {
    Link(u32),
    Core(u32),
}

/// Backpressure: who waits for a slot of a full buffer, in arrival order.
#[derive(Debug, Clone, Copy)]
enum Waiter {
    /// A packet that holds no slot (injected, or at the end of a route over free links) and
    /// waits at its router since the given tick.
    Held(Packet, u64),
    /// A link whose head packet goes next into this buffer.
    Link(u32),
}

/// Backpressure state of one directed link: its buffer, the slots held in it, its bandwidth
/// use and the waiters for a slot.
#[derive(Debug, Default, Clone)]
struct FlowLink {
    /// Packets in the buffer, each with the tick it entered.
    queue: VecDeque<(Packet, u64)>,
    /// Slots taken: packets in the buffer, on their way into it, or granted to a waiter.
    held: u32,
    last_depart: u64,
    used_at_last: u32,
    send_scheduled: bool,
    /// The head packet waits for a slot of its next buffer.
    blocked: bool,
    /// A slot of the head packet's next buffer is held for it.
    granted: bool,
    waiters: VecDeque<Waiter>,
}

/// Pending events ordered by `(tick, phase)`, first in first out within one `(tick, phase)`:
/// the order of a binary heap keyed `(tick, phase, sequence number)`. The buckets of one
/// `(tick, phase)` that are live at once are few (about 4 on average on a Loihi-timed run,
/// tens at most), so they sit in one vector by descending key: the next event is at its end,
/// and a push finds its bucket by a binary search over a few entries (a `BTreeMap` cost about
/// a fifth of such a run).
#[derive(Debug, Default)]
struct EventQueue {
    /// By descending key: the next event is the first unread one of the last bucket.
    buckets: Vec<Bucket>,
    /// Emptied buckets' event lists, for reuse.
    spare: Vec<Vec<Kind>>,
}

/// The events of one `(tick, phase)`, in the order they were pushed; those before `read` have
/// run (a vector with a read position: events of a bucket are pushed while it runs).
#[derive(Debug)]
struct Bucket {
    /// `tick << 2 | phase`.
    key: u64,
    read: usize,
    events: Vec<Kind>,
}

impl EventQueue {
    /// `tick <= MAX_TICK`, `phase < 4`.
    fn push(&mut self, tick: u64, phase: u8, kind: Kind) {
        debug_assert!(tick <= MAX_TICK && phase < 4);
        let key = (tick << 2) | u64::from(phase);
        let b = &mut self.buckets;
        let at = b.partition_point(|e| e.key > key);
        match b.get_mut(at) {
            Some(e) if e.key == key => e.events.push(kind),
            _ => {
                let mut events = self.spare.pop().unwrap_or_default();
                events.push(kind);
                b.insert(
                    at,
                    Bucket {
                        key,
                        read: 0,
                        events,
                    },
                );
            }
        }
    }

    fn pop(&mut self) -> Option<(u64, Kind)> {
        let b = self.buckets.last_mut()?;
        let tick = b.key >> 2;
        let kind = b.events[b.read];
        b.read += 1;
        if b.read == b.events.len() {
            if let Some(mut b) = self.buckets.pop() {
                b.events.clear();
                self.spare.push(b.events);
            }
        }
        Some((tick, kind))
    }
}

/// One directed link out of a router.
#[derive(Debug, Default, Clone)]
struct Link {
    last_depart: u64,
    used_at_last: u32,
    waiting: VecDeque<u64>,
}

/// Per-link state, allocated densely on small meshes and on first use on large ones.
#[derive(Debug)]
enum Links<L> {
    Dense(Vec<L>),
    Sparse(HashMap<u32, L>),
}

impl<L: Default + Clone> Links<L> {
    fn new(n_routers: usize) -> Self {
        if n_routers * 4 <= 1 << 16 {
            Self::Dense(vec![L::default(); n_routers * 4])
        } else {
            Self::Sparse(HashMap::new())
        }
    }
    fn get(&mut self, id: u32) -> &mut L {
        match self {
            Self::Dense(v) => &mut v[id as usize],
            Self::Sparse(m) => m.entry(id).or_default(),
        }
    }
    fn all(&self) -> Box<dyn Iterator<Item = &L> + '_> {
        match self {
            Self::Dense(v) => Box::new(v.iter()),
            Self::Sparse(m) => Box::new(m.values()),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct CoreUnit {
    buffer: VecDeque<Packet>,
    current: Option<Packet>,
    busy_until: u64,
    /// Backpressure: slots of the input buffer taken (buffered, on their way, or granted).
    held: u32,
    /// Backpressure: waiters for a slot of the input buffer.
    waiters: VecDeque<Waiter>,
    /// `start_next` is taking packets from the buffer (a slot it frees must not restart it).
    draining: bool,
}

impl CoreUnit {
    /// The core has input it has not processed yet.
    fn busy(&self) -> bool {
        self.current.is_some() || !self.buffer.is_empty()
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct GroupState {
    scheduled: bool,
    free_at: u64,
    rounds: u64,
}

struct Sim<'c, 'o, A: Arith> {
    st: Box<State<'c, A>>,
    chip: &'o ChipConfig,
    opts: &'o RunOptions,
    queue: EventQueue,
    cores: Vec<CoreUnit>,
    groups: Vec<GroupState>,
    links: Links<Link>,
    flow: Links<FlowLink>,
    backpressure: bool,
    input_group: u32,
    frame: u32,
    frame_start: u64,
    prefix: u32,
    sample: u64,
    fire_at: Option<u64>,
    step_at: Option<u64>,
    capped: Vec<u32>,
    released: Vec<u32>,
    woken: Vec<u32>,
    step_limit: u64,
    limit_is_error: bool,
    /// An event was due after [`MAX_TICK`]: the run ends with an error.
    past_max_tick: bool,
}

impl<A: Arith> Sim<'_, '_, A> {
    fn push(&mut self, tick: u64, phase: u8, kind: Kind) {
        if tick > MAX_TICK {
            self.past_max_tick = true;
            return;
        }
        self.queue.push(tick, phase, kind);
    }

    fn schedule_release(&mut self, g: u32, t: u64) -> Result<()> {
        let gs = self.groups[g as usize];
        if gs.scheduled {
            return Ok(());
        }
        if gs.rounds >= self.step_limit {
            if self.limit_is_error {
                return Err(Error::Runaway {
                    message: format!(
                        "frame {} of sample {}: a core released spikes in more than runaway_steps = {} \
                         rounds; set max_steps to cap the rounds per frame, or raise runaway_steps",
                        self.frame, self.sample, self.step_limit
                    ),
                });
            }
            self.capped.push(g);
            return Ok(());
        }
        let at = t.max(gs.free_at);
        self.groups[g as usize].scheduled = true;
        self.push(at, RELEASE, Kind::Release(g));
        Ok(())
    }

    fn ensure_fire(&mut self, t: u64) {
        if self.fire_at != Some(t) {
            self.fire_at = Some(t);
            self.push(t, FIRE, Kind::Fire);
        }
    }

    fn release(&mut self, g: u32, t: u64) -> Result<()> {
        let net = self.st.net;
        self.groups[g as usize].scheduled = false;
        let mut released = std::mem::take(&mut self.released);
        released.clear();
        if g == self.input_group && self.opts.input_mode == InputMode::AllAtOnce {
            self.st.queue.release_all(g, &mut released);
        } else {
            self.st.queue.release(
                g,
                self.opts.f_limit(),
                self.opts.scheduler,
                self.prefix,
                t - self.frame_start,
                &net.population,
                net.n_inputs,
                &mut released,
            );
        }
        let rt = self.chip.release_ticks;
        {
            let gs = &mut self.groups[g as usize];
            gs.rounds += 1;
            gs.free_at = t.saturating_add(rt);
        }
        if g != self.input_group {
            let b = &mut self.st.core_busy_ticks[g as usize];
            *b = b.saturating_add(rt);
        }
        released.sort_unstable();
        let when = When {
            frame: self.frame,
            step: t - self.frame_start,
            time: t,
            global_step: self.st.metrics.steps,
        };
        for &s in &released {
            let su = s as usize;
            let c = self.st.take_release(when, s);
            let router = net.router_of_source[su];
            let mut begin = net.row[su];
            for seg in net.seg[su]..net.seg[su + 1] {
                self.st.metrics.packets += 1;
                // segments < 2^32 (synapses are bounded)
                #[allow(clippy::cast_possible_truncation)]
                let pkt = Packet {
                    src: s,
                    count: c,
                    seg: seg as u32,
                    dst: net.core_at(begin),
                };
                begin = net.seg_end(seg);
                self.push(t, ARRIVE, Kind::Arrive(pkt, router));
            }
        }
        self.released = released;
        if self.step_at != Some(t) {
            self.step_at = Some(t);
            self.st.metrics.steps += 1;
        }
        self.ensure_fire(t);
        if self.st.queue.group_len(g) > 0 {
            self.schedule_release(g, t.saturating_add(rt))?;
        }
        Ok(())
    }

    fn arrive(&mut self, pkt: Packet, router: u32, t: u64) {
        let net = self.st.net;
        let dst = pkt.dst;
        if router == dst {
            self.reach_core(dst, pkt, t);
            return;
        }
        if self.chip.link_packets_per_tick.is_none() && self.chip.link_buffer_depth.is_none() {
            // Free links: no packet can delay another, so the whole route is taken at once.
            let hops = self.chip.hops(router as usize, dst as usize);
            self.st.metrics.hops += hops;
            let at = t.saturating_add(hops.saturating_mul(self.chip.hop_latency_ticks));
            if at == t {
                self.reach_core(dst, pkt, t);
            } else {
                self.push(at, ARRIVE, Kind::Arrive(pkt, dst));
            }
            return;
        }
        let (dir, next) = self.next_hop(router, dst);
        if self.backpressure {
            self.offer(Buf::Link(router * 4 + dir), pkt, t);
            return;
        }
        let depth = self.chip.link_buffer_depth;
        let bandwidth = self.chip.link_packets_per_tick;
        // A core (or the input port) never drops its own packets: its injection queue holds
        // them until the link takes them. Packets in transit find finite router buffers.
        let injected = router == net.router_of_source[pkt.src as usize];
        let link = self.links.get(router * 4 + dir);
        while link.waiting.front().is_some_and(|&d| d <= t) {
            link.waiting.pop_front();
        }
        if !injected && depth.is_some_and(|d| link.waiting.len() >= d as usize) {
            self.st.metrics.dropped_link += 1;
            return;
        }
        let depart = match bandwidth {
            None => t,
            Some(b) => {
                if link.last_depart >= t && link.used_at_last > 0 {
                    if link.used_at_last < b {
                        link.used_at_last += 1;
                        link.last_depart
                    } else {
                        link.last_depart += 1;
                        link.used_at_last = 1;
                        link.last_depart
                    }
                } else {
                    link.last_depart = t;
                    link.used_at_last = 1;
                    t
                }
            }
        };
        if depart > t {
            link.waiting.push_back(depart);
            self.st.metrics.stall_ticks += depart - t;
            self.st.metrics.stalled_packets += 1;
        }
        self.st.metrics.hops += 1;
        self.push(
            depart.saturating_add(self.chip.hop_latency_ticks),
            ARRIVE,
            Kind::Arrive(pkt, next),
        );
    }

    /// The direction (0: +x, 1: -x, 2: +y, 3: -y) and the router of the next hop of an XY
    /// route from `router` to `dst`.
    fn next_hop(&self, router: u32, dst: u32) -> (u32, u32) {
        let w = self.chip.mesh_width;
        let (x, y) = (router % w, router / w);
        let (dx, dy) = (dst % w, dst / w);
        let dir = if x != dx {
            u32::from(dx < x)
        } else {
            2 + u32::from(dy < y)
        };
        (dir, self.neighbour(router, dir))
    }

    /// The router next to `router` in direction `dir` (as in [`Self::next_hop`]).
    fn neighbour(&self, router: u32, dir: u32) -> u32 {
        let w = self.chip.mesh_width;
        match dir {
            0 => router + 1,
            1 => router - 1,
            2 => router + w,
            _ => router - w,
        }
    }

    /// A packet at its destination router that holds no slot of the core's input buffer.
    fn reach_core(&mut self, core: u32, pkt: Packet, t: u64) {
        if self.backpressure {
            self.offer(Buf::Core(core), pkt, t);
        } else {
            self.enqueue_at_core(core, pkt, t);
        }
    }

    /// Backpressure: the buffer a packet at `router` goes into next.
    fn buffer_at(&self, pkt: Packet, router: u32) -> Buf {
        let dst = pkt.dst;
        if router == dst {
            Buf::Core(dst)
        } else {
            Buf::Link(router * 4 + self.next_hop(router, dst).0)
        }
    }

    fn has_space(&mut self, buf: Buf) -> bool {
        match buf {
            Buf::Link(l) => self
                .chip
                .link_buffer_depth
                .is_none_or(|d| self.flow.get(l).held < d),
            Buf::Core(c) => self
                .chip
                .input_buffer_depth
                .is_none_or(|d| self.cores[c as usize].held < d),
        }
    }

    fn waiters(&mut self, buf: Buf) -> &mut VecDeque<Waiter> {
        match buf {
            Buf::Link(l) => &mut self.flow.get(l).waiters,
            Buf::Core(c) => &mut self.cores[c as usize].waiters,
        }
    }

    fn hold(&mut self, buf: Buf) {
        match buf {
            Buf::Link(l) => self.flow.get(l).held += 1,
            Buf::Core(c) => self.cores[c as usize].held += 1,
        }
    }

    /// Backpressure: a packet that holds no slot asks for one of `buf`; it waits, in arrival
    /// order, while the buffer is full or others wait before it.
    fn offer(&mut self, buf: Buf, pkt: Packet, t: u64) {
        if self.waiters(buf).is_empty() && self.has_space(buf) {
            self.hold(buf);
            self.enter(buf, pkt, t);
        } else {
            self.waiters(buf).push_back(Waiter::Held(pkt, t));
        }
    }

    /// Backpressure: a packet takes the slot of `buf` held for it.
    fn enter(&mut self, buf: Buf, pkt: Packet, t: u64) {
        match buf {
            Buf::Link(l) => {
                self.flow.get(l).queue.push_back((pkt, t));
                self.schedule_send(l, t);
            }
            Buf::Core(c) => {
                let unit = &mut self.cores[c as usize];
                unit.buffer.push_back(pkt);
                if unit.current.is_none() && !unit.draining {
                    self.start_next(c, t);
                }
            }
        }
    }

    /// Backpressure: a slot of `buf` was freed at `t`; hand free slots to the waiters in order.
    fn wake(&mut self, buf: Buf, t: u64) {
        while self.has_space(buf) {
            let Some(w) = self.waiters(buf).pop_front() else {
                return;
            };
            self.hold(buf);
            match w {
                Waiter::Held(pkt, since) => {
                    self.stalled(since, t);
                    self.enter(buf, pkt, t);
                }
                Waiter::Link(l) => {
                    let link = self.flow.get(l);
                    link.granted = true;
                    link.blocked = false;
                    self.schedule_send(l, t);
                }
            }
        }
    }

    fn stalled(&mut self, since: u64, t: u64) {
        if t > since {
            self.st.metrics.stalled_packets += 1;
            self.st.metrics.stall_ticks += t - since;
        }
    }

    fn schedule_send(&mut self, l: u32, t: u64) {
        let link = self.flow.get(l);
        if link.send_scheduled || link.blocked || link.queue.is_empty() {
            return;
        }
        link.send_scheduled = true;
        self.push(t, ARRIVE, Kind::Send(l));
    }

    /// Backpressure: link `l` sends the packets at the head of its buffer, at most
    /// `link_packets_per_tick` a tick, each once a slot of its next buffer is held for it.
    fn send(&mut self, l: u32, t: u64) {
        let next = self.neighbour(l / 4, l % 4);
        // `send_scheduled` stays set while this runs, so that packets entering the buffer
        // meanwhile do not schedule a second sender.
        loop {
            let bandwidth = self.chip.link_packets_per_tick;
            let link = self.flow.get(l);
            let Some(&(pkt, since)) = link.queue.front() else {
                link.send_scheduled = false;
                return;
            };
            if bandwidth.is_some_and(|b| link.last_depart == t && link.used_at_last >= b) {
                self.push(t + 1, ARRIVE, Kind::Send(l));
                return;
            }
            if !link.granted {
                let nb = self.buffer_at(pkt, next);
                if self.waiters(nb).is_empty() && self.has_space(nb) {
                    self.hold(nb);
                } else {
                    self.waiters(nb).push_back(Waiter::Link(l));
                    let link = self.flow.get(l);
                    link.blocked = true;
                    link.send_scheduled = false;
                    return;
                }
            }
            let link = self.flow.get(l);
            link.granted = false;
            link.queue.pop_front();
            link.held -= 1;
            if link.last_depart == t {
                link.used_at_last += 1;
            } else {
                link.last_depart = t;
                link.used_at_last = 1;
            }
            self.st.metrics.hops += 1;
            self.stalled(since, t);
            self.push(
                t.saturating_add(self.chip.hop_latency_ticks),
                ARRIVE,
                Kind::Hop(pkt, next),
            );
            self.wake(Buf::Link(l), t);
        }
    }

    /// Backpressure: a packet crossed a link into `router`, where a slot of its next buffer
    /// is held for it.
    fn hop(&mut self, pkt: Packet, router: u32, t: u64) {
        let buf = self.buffer_at(pkt, router);
        self.enter(buf, pkt, t);
    }

    fn enqueue_at_core(&mut self, core: u32, pkt: Packet, t: u64) {
        let unit = &mut self.cores[core as usize];
        if self
            .chip
            .input_buffer_depth
            .is_some_and(|d| unit.buffer.len() >= d as usize)
        {
            self.st.metrics.dropped_buffer += 1;
            return;
        }
        unit.buffer.push_back(pkt);
        if unit.current.is_none() {
            self.start_next(core, t);
        }
    }

    /// Start processing the next buffered packet of a core. Work that takes no time is done at
    /// once (it would complete in this tick's synaptic phase, before the fire phase, anyway).
    fn start_next(&mut self, core: u32, t: u64) {
        let net = self.st.net;
        self.cores[core as usize].draining = true;
        loop {
            let unit = &mut self.cores[core as usize];
            let Some(pkt) = unit.buffer.pop_front() else {
                unit.draining = false;
                return;
            };
            if self.backpressure {
                unit.held -= 1;
                self.wake(Buf::Core(core), t);
            }
            let unit = &mut self.cores[core as usize];
            let (src, seg) = (pkt.src as usize, pkt.seg as usize);
            let begin = net.seg_begin(src, seg);
            let service =
                ((net.seg_end(seg) - begin) as u64).saturating_mul(self.chip.syn_op_ticks);
            let start = t.max(unit.busy_until);
            if service == 0 && start == t {
                self.deliver(pkt, begin, t);
                continue;
            }
            unit.busy_until = start.saturating_add(service);
            unit.current = Some(pkt);
            let b = &mut self.st.core_busy_ticks[core as usize];
            *b = b.saturating_add(service);
            unit.draining = false;
            self.push(start.saturating_add(service), SYN_DONE, Kind::SynDone(core));
            return;
        }
    }

    fn deliver(&mut self, pkt: Packet, begin: usize, t: u64) {
        self.st
            .deliver_segment(pkt.src as usize, pkt.seg as usize, begin, pkt.count);
        self.st.metrics.packets_delivered += 1;
        self.ensure_fire(t);
    }

    fn syn_done(&mut self, core: u32, t: u64) {
        let net = self.st.net;
        let Some(pkt) = self.cores[core as usize].current.take() else {
            return;
        };
        self.deliver(pkt, net.seg_begin(pkt.src as usize, pkt.seg as usize), t);
        self.start_next(core, t);
    }

    fn fire(&mut self, t: u64) -> Result<()> {
        let when = When {
            frame: self.frame,
            step: t - self.frame_start,
            time: t,
            global_step: self.st.metrics.steps.saturating_sub(1),
        };
        let cores = &self.cores;
        let busy = |c: u32| cores[c as usize].busy();
        let when_idle = self.chip.neuron_update == NeuronUpdate::WhenIdle;
        self.st
            .fire(when, if when_idle { Some(&busy) } else { None });
        self.schedule_woken(t + 1)
    }

    /// Schedule a release round at `t` for every group that the last fire phase or draw woke.
    fn schedule_woken(&mut self, t: u64) -> Result<()> {
        let mut woken = std::mem::take(&mut self.woken);
        self.st.queue.take_woken(&mut woken);
        for &g in &woken {
            self.schedule_release(g, t)?;
        }
        self.woken = woken;
        Ok(())
    }

    /// Draw of stochastic / integrator population `d` at tick `t` (see `State::draw`); its
    /// spikes are released from `t + 1` on.
    fn draw(&mut self, d: usize, t: u64) -> Result<()> {
        let net = self.st.net;
        let when = When {
            frame: self.frame,
            step: t - self.frame_start,
            time: t,
            global_step: self.st.metrics.steps,
        };
        self.st.draw(d, self.prefix, when);
        self.st.metrics.steps += 1;
        let pop = net.draws[d];
        for n in pop.start..pop.start + pop.size {
            let b = &mut self.st.core_busy_ticks[net.core_of[n] as usize];
            *b = b.saturating_add(self.chip.neuron_update_ticks);
        }
        self.schedule_woken(t + 1)
    }
}

/// Latest tick a run may reach: with every tick cost at most 2^40 (see `ChipConfig::validate`)
/// no sum of a time and a cost can wrap around `u64` before this check sees it.
pub const MAX_TICK: u64 = 1 << 62;

/// Events handled between two looks at the stop flag.
const STOP_CHECK_EVENTS: u64 = 1 << 12;

fn past_max_tick(frame: u32, sample: u64, chip: &ChipConfig) -> Error {
    Error::input(
        "ticks",
        format!(
            "sample {sample} passed 2^62 ticks in frame {frame} on chip {:?}: its tick costs \
             (hop_latency_ticks {}, syn_op_ticks {}, neuron_update_ticks {}, release_ticks {}, \
             barrier_ticks {}) are too large for this many frames; lower them or run fewer frames",
            chip.name,
            chip.hop_latency_ticks,
            chip.syn_op_ticks,
            chip.neuron_update_ticks,
            chip.release_ticks,
            chip.barrier_ticks
        ),
    )
}

/// Run one sample in `events` mode.
pub(crate) fn run_sample<A: Arith>(
    net: &Compiled<A>,
    chip: &ChipConfig,
    input: &SampleInput,
    label: Option<u32>,
    sample: u64,
    opts: &RunOptions,
    stop: &AtomicBool,
) -> Result<SampleResult> {
    let n_cores = net.n_cores;
    // n_cores <= 2^20
    #[allow(clippy::cast_possible_truncation)]
    let input_group = n_cores as u32;
    let (step_limit, limit_is_error) = opts.step_limit();
    // One lane: events run one at a time.
    let one_lane = crate::lane::LanePlan::new(net, 1)?;
    let mut sim = Sim {
        st: State::new(
            net,
            n_cores + 1,
            input.n_frames(),
            opts.trace,
            label,
            &one_lane,
        )?,
        chip,
        opts,
        queue: EventQueue::default(),
        cores: vec![CoreUnit::default(); n_cores],
        groups: vec![GroupState::default(); n_cores + 1],
        links: Links::new(n_cores),
        flow: Links::new(n_cores),
        backpressure: chip.overflow == Overflow::Backpressure,
        input_group,
        frame: 0,
        frame_start: 0,
        prefix: 0,
        sample,
        fire_at: None,
        step_at: None,
        capped: Vec::new(),
        released: Vec::new(),
        woken: Vec::new(),
        step_limit,
        limit_is_error,
        past_max_tick: false,
    };
    let mut start = 0u64;
    let mut end = 0u64;
    let mut handled = 0u64;
    for (f, events) in input.frames.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        // frames <= 2^24
        #[allow(clippy::cast_possible_truncation)]
        let frame = f as u32;
        sim.frame = frame;
        sim.frame_start = start;
        sim.prefix = frame_prefix(opts.seed, sample, u64::from(frame));
        sim.st.leak();
        for (c, unit) in sim.cores.iter_mut().enumerate() {
            let leak = net.core_neurons[c].saturating_mul(chip.neuron_update_ticks);
            unit.busy_until = unit.busy_until.max(start).saturating_add(leak);
            sim.st.core_busy_ticks[c] = sim.st.core_busy_ticks[c].saturating_add(leak);
        }
        for g in &mut sim.groups {
            g.rounds = 0;
        }
        let since = u64::from(frame) << 32;
        for &(ch, n) in events {
            sim.st.queue.push(input_group, ch, n, since);
        }
        let mut woken = std::mem::take(&mut sim.woken);
        sim.st.queue.take_woken(&mut woken);
        woken.append(&mut sim.capped);
        woken.sort_unstable();
        woken.dedup();
        for &g in &woken {
            sim.schedule_release(g, start)?;
        }
        sim.woken = woken;
        end = start;
        let mut last: Option<u64> = None;
        let mut next_draw = 0usize;
        loop {
            while let Some((tick, kind)) = sim.queue.pop() {
                handled += 1;
                if handled.is_multiple_of(STOP_CHECK_EVENTS) && stop.load(Ordering::Relaxed) {
                    return Err(Error::Interrupted);
                }
                end = end.max(tick);
                last = Some(tick);
                match kind {
                    Kind::Release(g) => sim.release(g, tick)?,
                    Kind::Arrive(pkt, r) => sim.arrive(pkt, r, tick),
                    Kind::Hop(pkt, r) => sim.hop(pkt, r, tick),
                    Kind::Send(l) => sim.send(l, tick),
                    Kind::SynDone(c) => sim.syn_done(c, tick),
                    Kind::Fire => sim.fire(tick)?,
                }
                if sim.past_max_tick {
                    return Err(past_max_tick(frame, sample, chip));
                }
            }
            // Settled: the next stochastic / integrator population draws one tick after the
            // last event of the frame (at the frame start if there was none).
            if next_draw == net.draws.len() {
                break;
            }
            let t = last.map_or(start, |l| l + 1);
            sim.draw(next_draw, t)?;
            next_draw += 1;
            last = Some(t);
            end = end.max(t);
        }
        debug_assert!(sim
            .cores
            .iter()
            .all(|u| !u.busy() && u.waiters.is_empty() && u.held == 0));
        debug_assert!(sim
            .flow
            .all()
            .all(|l| l.queue.is_empty() && l.waiters.is_empty() && l.held == 0));
        sim.st.end_frame(frame)?;
        for unit in &sim.cores {
            end = end.max(unit.busy_until);
        }
        start = end.saturating_add(1).saturating_add(chip.barrier_ticks);
        if end > MAX_TICK || start > MAX_TICK {
            return Err(past_max_tick(frame, sample, chip));
        }
    }
    let total_ticks = if input.frames.is_empty() { 0 } else { end + 1 };
    let mut st = sim.st;
    st.metrics.ticks = total_ticks;
    let e = &mut st.metrics.energy;
    // Counts are far below 2^53: exact in f64.
    #[allow(clippy::cast_precision_loss)]
    {
        e.synaptic_pj = st.metrics.synaptic_operations as f64 * chip.syn_op_energy_pj;
        e.neuron_pj = st.metrics.membrane_updates as f64 * chip.neuron_update_energy_pj;
        e.routing_pj = st.metrics.packets as f64 * chip.packet_energy_pj
            + st.metrics.hops as f64 * chip.hop_energy_pj;
        e.static_pj = chip.static_power_mw * total_ticks as f64 * chip.tick_ns;
    }
    Ok(st.finish())
}
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// The event queue pops in `(tick, phase)` order, first in first out within one, like
        /// a sorted map of lists, whatever is pushed while it runs (near, far, or before the
        /// last tick popped).
        #[test]
        fn the_event_queue_pops_in_tick_phase_push_order(
            ops in proptest::collection::vec(
                (
                    // near ahead, far ahead, or (below) behind
                    prop_oneof![0u64..8, 0u64..700],
                    0u8..4,
                    0u8..3,
                ),
                1..400,
            )
        ) {
            let mut q = EventQueue::default();
            let mut model: BTreeMap<(u64, u8), VecDeque<u32>> = BTreeMap::new();
            let mut now = 0u64;
            for (n, &(dt, phase, pops)) in ops.iter().enumerate() {
                // mostly ahead of the last popped tick, sometimes behind it
                let tick = if n % 17 == 5 { now.saturating_sub(dt % 5) } else { now + dt };
                let id = n as u32;
                q.push(tick, phase, Kind::Release(id));
                model.entry((tick, phase)).or_default().push_back(id);
                for _ in 0..pops {
                    let want = model.first_entry().map(|mut e| {
                        let t = e.key().0;
                        let v = e.get_mut().pop_front().unwrap();
                        if e.get().is_empty() {
                            e.remove();
                        }
                        (t, v)
                    });
                    let got = q.pop().map(|(t, k)| match k {
                        Kind::Release(v) => (t, v),
                        _ => unreachable!(),
                    });
                    prop_assert_eq!(got, want);
                    if let Some((t, _)) = got {
                        now = t;
                    }
                }
            }
            while let Some((t, k)) = q.pop() {
                let Kind::Release(v) = k else { unreachable!() };
                let mut e = model.first_entry().unwrap();
                prop_assert_eq!((t, v), (e.key().0, e.get_mut().pop_front().unwrap()));
                if e.get().is_empty() {
                    e.remove();
                }
            }
            prop_assert!(model.is_empty());
        }
    }
}
