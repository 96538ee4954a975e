fn main() {
    let bytes = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sealwatch"));
    let mut ebpf = aya::Ebpf::load(bytes).unwrap();
    for name in ["tc_ingress", "tc_egress"] {
        let p: &mut aya::programs::SchedClassifier = ebpf.program_mut(name).unwrap().try_into().unwrap();
        if let Err(e) = p.load() { println!("{name}: {e:#?}"); } else { println!("{name} ok"); }
    }
    let p: &mut aya::programs::Xdp = ebpf.program_mut("xdp_ingress").unwrap().try_into().unwrap();
    if let Err(e) = p.load() { println!("xdp: {e:#?}"); } else { println!("xdp ok"); }
}
