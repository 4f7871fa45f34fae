//! Which addresses an upstream set through the admin API may reach.
//!
//! A tenant chooses its workspace's upstream URL. Left unchecked, that URL can point the gateway at its
//! own machine, the database, Redis, a cloud metadata service (`169.254.169.254`) or anything else on the
//! private network, and the answers (or the kinds of failure) tell the tenant what is there. So an
//! upstream set through the admin API reaches only public addresses unless the operator allows a
//! network (`[server] admin_upstream_allow`), and never one the operator denies
//! (`admin_upstream_deny`). The check runs on the addresses a name resolves to, when the connection
//! is made: a name that resolves to a private address is refused like an address written in the URL,
//! and the address checked is the one connected to. The gateway does not follow redirects (an upstream's
//! redirect goes back to the client as its answer), so there is no second hop to check. Upstreams from
//! the configuration file are the operator's own and are not checked.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

/// The networks an upstream set through the admin API may not reach unless allowed: loopback,
/// private, link-local (cloud metadata services), shared (carrier-grade NAT), benchmarking, multicast,
/// reserved and unspecified addresses.
const PRIVATE: [&str; 17] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

/// Which addresses upstreams set through the admin API may reach.
#[derive(Clone, Debug)]
pub struct EgressPolicy {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    private: Vec<IpNet>,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        Self::new(Vec::new(), Vec::new())
    }
}

impl EgressPolicy {
    /// Public addresses, and those in `allow`, except those in `deny` (which wins over `allow`).
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> Self {
        let private = PRIVATE
            .iter()
            .filter_map(|network| network.parse().ok())
            .collect();
        Self {
            allow,
            deny,
            private,
        }
    }

    /// Whether an upstream set through the admin API may connect to `address`. An IPv4 address
    /// written as IPv6 (`::ffff:127.0.0.1`, or NAT64's `64:ff9b::7f00:1`) is judged as the IPv4 address.
    pub fn permits(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        let within = |networks: &[IpNet]| networks.iter().any(|n| n.contains(&address));
        if within(&self.deny) {
            return false;
        }
        within(&self.allow) || !within(&self.private)
    }
}

/// `address`, or the IPv4 address it carries.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let segments = v6.segments();
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [.., high, low] = segments;
                let [a, b] = high.to_be_bytes();
                let [c, d] = low.to_be_bytes();
                return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            }
            IpAddr::V6(v6)
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn private_and_special_addresses_are_refused_by_default() {
        let policy = EgressPolicy::default();
        for refused in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.0.0.5",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
        ] {
            assert!(!policy.permits(ip(refused)), "{refused}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(policy.permits(ip(public)), "{public}");
        }
    }

    #[test]
    fn the_operator_allows_networks_and_denies_win() {
        let policy = EgressPolicy::new(
            vec!["10.20.0.0/16".parse().unwrap()],
            vec![
                "10.20.0.5/32".parse().unwrap(),
                "93.184.216.0/24".parse().unwrap(),
            ],
        );
        assert!(policy.permits(ip("10.20.1.1")));
        assert!(
            !policy.permits(ip("10.20.0.5")),
            "a denied address inside an allowed network"
        );
        assert!(!policy.permits(ip("10.21.0.1")));
        assert!(
            !policy.permits(ip("93.184.216.34")),
            "a denied public network"
        );
        assert!(policy.permits(ip("1.1.1.1")));
    }
}
