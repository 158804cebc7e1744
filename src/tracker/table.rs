//! The connection table's storage: connections in slots (full form or parked), found by flow key.
//!
//! Contract: a connection lives in one slot from [`Table::insert`] to [`Table::release`]; its
//! slot number is stable, and [`Table::find`] maps its flow key to it. [`Table::activate`] gives
//! the full form of any live slot (waking a parked one into a reused box); [`Table::park`]
//! shrinks a connection at rest once more than `limit` are in full form. The index holds slot
//! numbers only (the key is in the slot), so it costs about 10 bytes a connection.

use super::TrackerConfig;
use super::conn::Conn;
use super::parked::{Addresses, Parked};
use crate::flow::FlowKey;
use crate::flow::slab::PagedSlab;
use crate::session::SessionId;
use crate::session::record::SessionRecord;
use crate::time::Timestamp;
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// Spare boxes kept for waking connections.
const MAX_SPARE: usize = 4096;

/// A slot of the connection table.
#[allow(clippy::large_enum_variant)] // on purpose: parked connections live inline in the slab pages
pub(super) enum Slot {
    /// Full form: reassemblers, decoders and all.
    Active(Box<Conn>),
    /// An idle connection at rest, in a fraction of the space.
    Parked(Parked),
}

impl Slot {
    pub(super) fn id(&self) -> SessionId {
        match self {
            Slot::Active(c) => c.id,
            Slot::Parked(p) => SessionId::from(p.id),
        }
    }

    pub(super) fn done(&self) -> bool {
        matches!(self, Slot::Active(c) if c.done)
    }

    fn key(&self, addrs: &Addresses) -> FlowKey {
        match self {
            Slot::Active(c) => c.key,
            Slot::Parked(p) => p.key(addrs),
        }
    }
}

/// Connections by slot, and the index to them.
#[derive(Default)]
pub(super) struct Table {
    conns: PagedSlab<Slot>,
    index: HashTable<u32>,
    hash: foldhash::fast::RandomState,
    /// Addresses of parked connections kept out of line.
    addrs: Addresses,
    /// Full-form connections in `conns`.
    active: usize,
    /// Boxes kept for reuse when a connection wakes or a new one comes.
    #[allow(clippy::vec_box)] // the boxes move into and out of slab slots
    spare: Vec<Box<Conn>>,
}

impl Table {
    /// Connections stored.
    pub(super) fn len(&self) -> usize {
        self.conns.len()
    }

    /// Connections in full form.
    pub(super) fn active(&self) -> usize {
        self.active
    }

    pub(super) fn get(&self, slot: usize) -> Option<&Slot> {
        self.conns.get(slot)
    }

    /// Every stored connection with its slot.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.conns.iter()
    }

    /// The record so far of the session in `slot`, if it is open (not ended) and has shown MQTT.
    pub(super) fn snapshot(&self, slot: &Slot, now: Timestamp) -> Option<SessionRecord> {
        let (record, session) = match slot {
            // A closed session whose connection lingers (half-closed) is not open any more.
            Slot::Active(c) if !c.done && !c.session.is_closed() && c.record.shows_mqtt() => {
                (c.record.snapshot(c.id, c.key.into(), c.session.max_silence()), &c.session)
            }
            Slot::Parked(p) if p.record.shows_mqtt() => {
                (p.record.snapshot(p.id.into(), p.key(&self.addrs).into(), p.session.max_silence()), &p.session)
            }
            _ => return None,
        };
        Some(record.at(now, session.last_activity(), session.deadline()))
    }

    /// The slot of `key`'s connection.
    pub(super) fn find(&self, key: &FlowKey) -> Option<usize> {
        let (conns, addrs) = (&self.conns, &self.addrs);
        let hash = self.hash.hash_one(key);
        self.index.find(hash, |&s| conns.get(s as usize).is_some_and(|c| c.key(addrs) == *key)).map(|&s| s as usize)
    }

    /// An unused connection (a spare box when there is one), for [`Table::insert`].
    pub(super) fn blank(&mut self, cfg: &TrackerConfig) -> Box<Conn> {
        self.spare.pop().unwrap_or_else(|| Box::new(Conn::new(cfg)))
    }

    /// Stores a new connection in full form; returns its slot.
    pub(super) fn insert(&mut self, conn: Box<Conn>) -> usize {
        let key = conn.key;
        let slot = self.conns.insert(Slot::Active(conn));
        self.active += 1;
        let (conns, addrs, hash) = (&self.conns, &self.addrs, &self.hash);
        self.index.insert_unique(hash.hash_one(key), slot as u32, |&s| {
            hash.hash_one(conns.get(s as usize).expect("indexed slots are live").key(addrs))
        });
        slot
    }

    /// The full form of the connection in `slot` (which must be live), waking it if parked.
    pub(super) fn activate(&mut self, slot: usize, cfg: &TrackerConfig) -> &mut Conn {
        let entry = self.conns.get_mut(slot).expect("activate is given live slots");
        if let Slot::Parked(p) = entry {
            let mut conn = self.spare.pop().unwrap_or_else(|| Box::new(Conn::new(cfg)));
            p.unpark_into(&mut conn, &mut self.addrs);
            *entry = Slot::Active(conn);
            self.active += 1;
        }
        match entry {
            Slot::Active(conn) => conn,
            Slot::Parked(_) => unreachable!("woken above"),
        }
    }

    /// The connection in `slot` if it is in full form.
    pub(super) fn get_active(&mut self, slot: usize) -> Option<&mut Conn> {
        match self.conns.get_mut(slot) {
            Some(Slot::Active(conn)) => Some(conn),
            _ => None,
        }
    }

    /// Drops the connection in `slot` (in full form: ended connections are never parked);
    /// returns the bytes it held by its own account. Its box is kept for reuse.
    pub(super) fn release(&mut self, slot: usize) -> usize {
        let Some(Slot::Active(conn)) = self.conns.remove(slot) else { return 0 };
        self.active -= 1;
        let hash = self.hash.hash_one(conn.key);
        if let Ok(entry) = self.index.find_entry(hash, |&s| s as usize == slot) {
            entry.remove();
        }
        let accounted = conn.accounted;
        self.keep_spare(conn);
        accounted
    }

    /// Parks the connection in `slot` if more than `limit` are in full form and it is at rest.
    pub(super) fn park(&mut self, slot: usize, limit: usize) {
        if self.active <= limit {
            return;
        }
        let Some(Slot::Active(conn)) = self.conns.get_mut(slot) else { return };
        let Some(parked) = conn.park(&mut self.addrs) else { return };
        let entry = self.conns.get_mut(slot).expect("checked above");
        let Slot::Active(conn) = std::mem::replace(entry, Slot::Parked(parked)) else { unreachable!("checked above") };
        self.active -= 1;
        self.keep_spare(conn);
    }

    /// Keeps a box for reuse, up to [`MAX_SPARE`].
    fn keep_spare(&mut self, conn: Box<Conn>) {
        if self.spare.len() < MAX_SPARE {
            self.spare.push(conn);
        }
    }
}
