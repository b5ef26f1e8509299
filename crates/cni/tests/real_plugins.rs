//! The caller driving Debian's reference plugins (bridge, host-local, portmap, loopback) for
//! real, as root, each test in its own node netns (see `common`). What is asserted is what
//! the pod and the node see: addresses, routes, pings, iptables rules, IPAM reservations.

mod common;

use std::collections::HashSet;
use std::net::IpAddr;

use common::{run, Node, PodNetns};
use deckhand_cni::{CniError, IpNet, PortMapping, Protocol};
use serde_json::json;

#[test]
fn add_gives_the_pod_a_working_eth0_and_del_takes_it_away() {
    let node = Node::new();
    node.write_conflist(
        "10-dhnet.conflist",
        "1.0.0",
        vec![node.bridge_plugin("10.244.7.0/24")],
    );
    let caller = node.caller();
    let pod = PodNetns::new();
    let att = pod.attachment("c1");

    let result = node.rt.block_on(caller.add(&att)).unwrap();
    let subnet: IpNet = "10.244.7.0/24".parse().unwrap();
    let ip = result
        .pod_ips("eth0")
        .ipv4
        .expect("an IPv4 address on eth0");
    assert!(subnet.contains(ip.addr), "{ip} not in {subnet}");
    assert_eq!(ip.prefix_len, 24);
    let gw = result.ips[0]
        .gateway
        .expect("bridge with isGateway reports the gateway");
    assert_eq!(gw, "10.244.7.1".parse::<IpAddr>().unwrap());

    // What the pod really has.
    let addr = pod.ip(&["-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains(&format!("inet {ip} ")), "{addr}");
    let route = pod.ip(&["route", "show", "default"]);
    assert!(route.contains("default via 10.244.7.1 dev eth0"), "{route}");
    assert!(pod.ping(gw), "the pod cannot reach its gateway {gw}");
    assert_eq!(node.reserved_ips(), vec![ip.addr]);
    assert_eq!(node.host_veths().len(), 1);

    // CHECK agrees with what ADD did, and notices when the pod's address is gone.
    node.rt.block_on(caller.check(&att)).unwrap();
    pod.ip(&["addr", "flush", "dev", "eth0"]);
    let err = node.rt.block_on(caller.check(&att)).unwrap_err();
    assert!(
        matches!(&err, CniError::Plugin { plugin, command: "CHECK", .. } if plugin == "bridge"),
        "{err:?}"
    );

    node.rt.block_on(caller.del(&att)).unwrap();
    assert!(
        node.host_veths().is_empty(),
        "veth left: {:?}",
        node.host_veths()
    );
    assert!(
        node.reserved_ips().is_empty(),
        "IP left reserved: {:?}",
        node.reserved_ips()
    );
    assert!(!pod.ip(&["-o", "link"]).contains("eth0"));
    assert!(!node.cache_dir.join("results/dhnet-c1-eth0").exists());

    // Twice, and once more after the netns is gone: DEL is idempotent.
    node.rt.block_on(caller.del(&att)).unwrap();
    drop(pod);
    node.rt.block_on(caller.del(&att)).unwrap();
}

#[test]
fn two_pods_on_one_bridge_reach_each_other_on_cni_0_4_0() {
    let node = Node::new();
    node.write_conflist(
        "10-dhnet.conflist",
        "0.4.0",
        vec![node.bridge_plugin("10.244.8.0/24")],
    );
    let caller = node.caller();
    let (a, b) = (PodNetns::new(), PodNetns::new());
    let ra = node.rt.block_on(caller.add(&a.attachment("ca"))).unwrap();
    let rb = node.rt.block_on(caller.add(&b.attachment("cb"))).unwrap();
    assert_eq!(ra.cni_version, "0.4.0");
    let (ipa, ipb) = (
        ra.pod_ips("eth0").primary().unwrap(),
        rb.pod_ips("eth0").primary().unwrap(),
    );
    assert_ne!(ipa, ipb);
    assert!(a.ping(ipb), "pod a cannot reach pod b at {ipb}");
    assert!(b.ping(ipa), "pod b cannot reach pod a at {ipa}");
    node.rt.block_on(caller.check(&a.attachment("ca"))).unwrap();
    for (pod, id) in [(&a, "ca"), (&b, "cb")] {
        node.rt.block_on(caller.del(&pod.attachment(id))).unwrap();
    }
    assert!(node.reserved_ips().is_empty());
}

#[test]
fn portmap_installs_and_removes_host_port_rules() {
    let node = Node::new();
    node.write_conflist(
        "10-dhnet.conflist",
        "1.0.0",
        vec![
            node.bridge_plugin("10.244.9.0/24"),
            json!({"type": "portmap", "capabilities": {"portMappings": true}}),
        ],
    );
    let caller = node.caller();
    let pod = PodNetns::new();
    let mut att = pod.attachment("cp");
    att.port_mappings = vec![PortMapping {
        host_port: 18080,
        container_port: 80,
        protocol: Protocol::Tcp,
        host_ip: None,
    }];
    let result = node.rt.block_on(caller.add(&att)).unwrap();
    let ip = result.pod_ips("eth0").primary().unwrap();

    // Debian's portmap (1.1.1) programs iptables' nat table in the node netns.
    let nat = run("iptables", &["-t", "nat", "-S"]);
    assert!(nat.contains("CNI-HOSTPORT-DNAT"), "{nat}");
    let dnat = nat
        .lines()
        .find(|l| l.contains("--dport 18080") && l.contains("DNAT"))
        .unwrap_or_else(|| panic!("no DNAT rule for hostPort 18080:\n{nat}"));
    assert!(
        dnat.contains(&format!("--to-destination {ip}:80")),
        "{dnat}"
    );

    // DEL without the port mappings: they come from the cache.
    node.rt.block_on(caller.del(&pod.attachment("cp"))).unwrap();
    let nat = run("iptables", &["-t", "nat", "-S"]);
    assert!(
        !nat.contains("--dport 18080"),
        "rule left after DEL:\n{nat}"
    );
    assert!(node.reserved_ips().is_empty());
}

#[test]
fn a_missing_plugin_binary_fails_clearly_and_leaks_nothing() {
    let node = Node::new();
    node.write_conflist(
        "10-dhnet.conflist",
        "1.0.0",
        vec![
            node.bridge_plugin("10.244.10.0/24"),
            json!({"type": "no-such-plugin"}),
        ],
    );
    let caller = node.caller();
    let pod = PodNetns::new();
    let err = node
        .rt
        .block_on(caller.add(&pod.attachment("cm")))
        .unwrap_err();
    assert!(matches!(err, CniError::PluginNotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("no-such-plugin") && msg.contains("/usr/lib/cni"),
        "{msg}"
    );
    let status = node.rt.block_on(caller.status()).unwrap_err();
    assert!(status.to_string().contains("no-such-plugin"), "{status}");
    // Nothing ran: no bridge, no veth, no IP.
    assert!(!common::succeeds("ip", &["link", "show", &node.bridge]));
    assert!(node.host_veths().is_empty());
    assert!(node.reserved_ips().is_empty());
}

#[test]
fn a_chained_failure_midway_cleans_up() {
    let node = Node::new();
    node.write_fake_plugin(
        "refuse",
        "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\n\
         echo '{\"cniVersion\":\"1.0.0\",\"code\":101,\"msg\":\"policy refused\"}'\nexit 1\n",
    );
    node.write_conflist(
        "10-dhnet.conflist",
        "1.0.0",
        vec![
            node.bridge_plugin("10.244.11.0/24"),
            json!({"type": "refuse"}),
        ],
    );
    let caller = node.caller();
    let pod = PodNetns::new();
    let err = node
        .rt
        .block_on(caller.add(&pod.attachment("cf")))
        .unwrap_err();
    assert!(
        matches!(&err, CniError::Plugin { plugin, code: 101, .. } if plugin == "refuse"),
        "{err:?}"
    );
    assert!(err.to_string().contains("policy refused"));
    // bridge ran and was undone: no veth, no IP, no eth0, nothing cached.
    assert!(
        node.host_veths().is_empty(),
        "veth left: {:?}",
        node.host_veths()
    );
    assert!(
        node.reserved_ips().is_empty(),
        "IP left: {:?}",
        node.reserved_ips()
    );
    assert!(!pod.ip(&["-o", "link"]).contains("eth0"));
    assert!(!node.cache_dir.join("results/dhnet-cf-eth0").exists());
}

#[test]
fn ten_parallel_adds_get_distinct_working_ips() {
    let node = Node::new();
    node.write_conflist(
        "10-dhnet.conflist",
        "1.0.0",
        vec![node.bridge_plugin("10.244.12.0/24")],
    );
    let caller = std::sync::Arc::new(node.caller());
    let pods: Vec<PodNetns> = (0..10).map(|_| PodNetns::new()).collect();
    let results = node.rt.block_on(async {
        let tasks: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let caller = caller.clone();
                let att = pod.attachment(&format!("par{i}"));
                tokio::spawn(async move { caller.add(&att).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap().unwrap());
        }
        results
    });
    let ips: Vec<IpAddr> = results
        .iter()
        .map(|r| r.pod_ips("eth0").primary().unwrap())
        .collect();
    let distinct: HashSet<_> = ips.iter().collect();
    assert_eq!(distinct.len(), 10, "{ips:?}");
    for (pod, ip) in pods.iter().zip(&ips) {
        let addr = pod.ip(&["-o", "-4", "addr", "show", "dev", "eth0"]);
        assert!(addr.contains(&format!("inet {ip}/24")), "{addr}");
    }
    let mut reserved = node.reserved_ips();
    let mut want = ips.clone();
    reserved.sort();
    want.sort();
    assert_eq!(reserved, want);
    assert!(pods[0].ping(ips[9]));

    node.rt.block_on(async {
        let tasks: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let caller = caller.clone();
                let att = pod.attachment(&format!("par{i}"));
                tokio::spawn(async move { caller.del(&att).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    });
    assert!(node.reserved_ips().is_empty());
    assert!(node.host_veths().is_empty());
}

#[test]
fn status_waits_for_a_config_and_a_single_plugin_conf_works() {
    let node = Node::new();
    let caller = node.caller();
    let err = node.rt.block_on(caller.status()).unwrap_err();
    assert!(matches!(err, CniError::NoConfig { .. }), "{err:?}");

    // The agent writes a plain .conf (one plugin) later; the same caller picks it up.
    let conf = json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"});
    std::fs::write(node.conf_dir.join("99-loopback.conf"), conf.to_string()).unwrap();
    node.rt.block_on(caller.status()).unwrap();

    let pod = PodNetns::new();
    let att = deckhand_cni::Attachment {
        ifname: "lo".into(),
        ..pod.attachment("cl")
    };
    let before = pod.ip(&["-o", "link", "show", "lo"]);
    assert!(!before.contains(",UP"), "{before}");
    let result = node.rt.block_on(caller.add(&att)).unwrap();
    assert_eq!(
        result.pod_ips("lo").primary(),
        Some("127.0.0.1".parse().unwrap())
    );
    let after = pod.ip(&["-o", "link", "show", "lo"]);
    assert!(after.contains(",UP"), "{after}");
    assert!(node.cache_dir.join("results/lo-cl-lo").exists());
    node.rt.block_on(caller.del(&att)).unwrap();
    let deleted = pod.ip(&["-o", "link", "show", "lo"]);
    assert!(!deleted.contains(",UP"), "{deleted}");
}
