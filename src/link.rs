//! Link-layer header types: the one owner of what each LINKTYPE_ value is called and how its
//! frames are framed.
//!
//! Contract: capture sources label frames with a [`LinkType`] as their file or socket states it;
//! [`LinkType::framing`] says how [`crate::decode`] reads such a frame, `None` for link types it
//! cannot read (a capture of those is refused or its frames are counted as skipped).

/// A link-layer header type (a LINKTYPE_ value from the pcap spec).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct LinkType(pub u32);

/// How the frames of a supported link type start.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Framing {
    /// Ethernet II, with any number of 802.1Q/QinQ tags.
    Ethernet,
    /// BSD loopback/NULL: a 4-byte address family, then IP.
    Loopback,
    /// IPv4 or IPv6 from the first byte.
    RawIp,
    /// Linux cooked v1 (`-i any`): a 16-byte header, the protocol in its last two bytes.
    LinuxSll,
    /// Linux cooked v2: a 20-byte header, the protocol in its first two bytes.
    LinuxSll2,
}

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// How frames of this type are read, or `None` when they cannot be.
    pub fn framing(self) -> Option<Framing> {
        Some(match self.0 {
            1 => Framing::Ethernet,
            0 | 108 => Framing::Loopback,
            // 12 and 14 are the raw-IP values of some BSDs' DLT_RAW.
            12 | 14 | 101 | 228 | 229 => Framing::RawIp,
            113 => Framing::LinuxSll,
            276 => Framing::LinuxSll2,
            _ => return None,
        })
    }

    /// The conventional name (as libpcap's `pcap_datalink_val_to_name`).
    pub fn name(self) -> String {
        match self.0 {
            0 => "NULL".into(),
            1 => "EN10MB".into(),
            12 | 14 | 101 => "RAW".into(),
            108 => "LOOP".into(),
            113 => "LINUX_SLL".into(),
            228 => "IPV4".into(),
            229 => "IPV6".into(),
            276 => "LINUX_SLL2".into(),
            105 => "IEEE802_11".into(),
            127 => "IEEE802_11_RADIO".into(),
            189 => "USB_LINUX".into(),
            n => format!("LINKTYPE {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_supported_type_has_a_framing() {
        for t in [
            LinkType::NULL,
            LinkType::ETHERNET,
            LinkType::RAW,
            LinkType::LOOP,
            LinkType::LINUX_SLL,
            LinkType::IPV4,
            LinkType::IPV6,
            LinkType::LINUX_SLL2,
        ] {
            assert!(t.framing().is_some(), "{}", t.name());
        }
        assert_eq!(LinkType(189).framing(), None);
        assert_eq!(LinkType(189).name(), "USB_LINUX");
        assert_eq!(LinkType(4242).name(), "LINKTYPE 4242");
    }
}
