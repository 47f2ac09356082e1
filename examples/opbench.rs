use candle_core::{Device, Tensor};
use std::time::Instant;
fn t<F: FnMut() -> Tensor>(name: &str, mut f: F) { let _ = f(); let s = Instant::now(); for _ in 0..5 { let _ = f(); } println!("{name:40} {:8.2} ms", s.elapsed().as_secs_f64()*200.0); }
fn main() {
    let dev = Device::Cpu;
    let (b, n, h) = (256usize, 13usize, 64usize);
    let e = Tensor::randn(0f32, 1., (b*n*n, h), &dev).unwrap();
    let e3 = Tensor::randn(0f32, 1., (b*n, n, h), &dev).unwrap();
    let ones = Tensor::ones((b*n, 1, n), candle_core::DType::F32, &dev).unwrap();
    let w1 = Tensor::randn(0f32, 1., (h, 1), &dev).unwrap();
    t("silu", || e.silu().unwrap());
    t("x*sigmoid(x)", || (&e * candle_nn::ops::sigmoid(&e).unwrap()).unwrap());
    t("sigmoid full", || candle_nn::ops::sigmoid(&e).unwrap());
    t("relu", || e.relu().unwrap());
    t("gelu_erf", || e.gelu_erf().unwrap());
    t("gelu tanh", || e.gelu().unwrap());
    t("bmm ones sum", || ones.matmul(&e3).unwrap());
    t("sum(1) of 3d", || e3.sum(1).unwrap());
    t("matmul Ex1", || e.matmul(&w1).unwrap());
}
