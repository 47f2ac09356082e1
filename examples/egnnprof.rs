#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use boltzmann_studio::energy::{Energy, LennardJones};
use boltzmann_studio::nn::{ControlNet, Init};
use boltzmann_studio::scene::{NetworkConfig, NetworkKind};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
fn main() {
    let mode = std::env::args().nth(1).unwrap_or("fwd".into());
    let layout = LennardJones::new(13).layout();
    let varmap = VarMap::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let dev = Device::Cpu;
    let mut init = Init { varmap: &varmap, rng: &mut rng, device: &dev };
    let net = ControlNet::new(&NetworkConfig { kind: NetworkKind::Egnn, layers: 3, hidden: 64 }, layout, 1.0, &mut init).unwrap();
    let x = Tensor::randn(0f32, 1.0, (256, 39), &dev).unwrap();
    let t = Tensor::rand(0f32, 1.0, 256, &dev).unwrap();
    { let y = net.forward(&x, &t).unwrap(); y.sqr().unwrap().mean_all().unwrap().backward().unwrap(); }
    let s = std::time::Instant::now();
    for _ in 0..5 {
        let y = net.forward(&x, &t).unwrap();
        if mode == "bwd" { y.sqr().unwrap().mean_all().unwrap().backward().unwrap(); }
    }
    println!("{mode}: {:.1} ms", s.elapsed().as_secs_f64() * 200.0);
}
