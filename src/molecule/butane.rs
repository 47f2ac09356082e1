//! Butane as four TraPPE united-atom beads (molecules.md §5): bonds 1.54 Å and angles 114° fixed,
//! one free torsion with U(φ)/k_B = 355.03 (1 + cos φ) − 68.19 (1 − cos 2φ) + 791.32 (1 + cos 3φ) K.

use super::{Molecule, TorsionSpace};
use crate::energy::{Energy, Layout};

const C1: f64 = 355.03;
const C2: f64 = 68.19;
const C3: f64 = 791.32;

/// TraPPE-UA butane at a temperature.
#[derive(Debug, Clone)]
pub struct Butane {
    temperature: f64,
    space: TorsionSpace,
}

impl Butane {
    pub fn new(temperature: f64) -> Butane {
        // Beads 0–1–2–3 in a plane, trans (φ = 180°), centred.
        let (b, angle) = (1.54, 114f64.to_radians());
        let dx = b * (std::f64::consts::PI - angle).cos();
        let dy = b * (std::f64::consts::PI - angle).sin();
        let mut x = vec![
            -dx - b / 2.0,
            -dy,
            0.0,
            -b / 2.0,
            0.0,
            0.0,
            b / 2.0,
            0.0,
            0.0,
            b / 2.0 + dx,
            dy,
            0.0,
        ];
        let cy = x.iter().skip(1).step_by(3).sum::<f64>() / 4.0;
        for y in x.iter_mut().skip(1).step_by(3) {
            *y -= cy;
        }
        let space = TorsionSpace::new(x, &[(0, 1), (1, 2), (2, 3)], &[[0, 1, 2, 3]])
            .expect("butane's one torsion is valid");
        Butane { temperature, space }
    }

    /// U(φ)/k_B in kelvin.
    pub fn potential_kelvin(phi: f64) -> f64 {
        C1 * (1.0 + phi.cos()) - C2 * (1.0 - (2.0 * phi).cos()) + C3 * (1.0 + (3.0 * phi).cos())
    }

    fn d_potential(phi: f64) -> f64 {
        -C1 * phi.sin() - 2.0 * C2 * (2.0 * phi).sin() - 3.0 * C3 * (3.0 * phi).sin()
    }

    fn d2_potential(phi: f64) -> f64 {
        -C1 * phi.cos() - 4.0 * C2 * (2.0 * phi).cos() - 9.0 * C3 * (3.0 * phi).cos()
    }
}

impl Molecule for Butane {
    fn elements(&self) -> Vec<&'static str> {
        vec!["C"; 4]
    }
    fn atom_names(&self) -> Vec<String> {
        ["C1", "C2", "C3", "C4"].map(String::from).to_vec()
    }
    fn residue_names(&self) -> Vec<String> {
        vec!["BUT".to_string(); 4]
    }
    fn bonds(&self) -> Vec<(usize, usize)> {
        vec![(0, 1), (1, 2), (2, 3)]
    }
    fn torsion_names(&self) -> Vec<String> {
        vec!["phi".into()]
    }
    fn positions(&self, theta: &[f64]) -> Vec<f64> {
        self.space.positions(theta)
    }
    fn temperature(&self) -> f64 {
        self.temperature
    }
}

impl Energy for Butane {
    fn name(&self) -> String {
        "butane".into()
    }
    fn layout(&self) -> Layout {
        Layout {
            particles: 1,
            spatial_dim: 1,
            com_free: false,
        }
    }
    fn energy_grad(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        grad[0] = Self::d_potential(theta[0]) / self.temperature;
        Self::potential_kelvin(theta[0]) / self.temperature
    }
    fn laplacian(&self, theta: &[f64]) -> f64 {
        Self::d2_potential(theta[0]) / self.temperature
    }
    fn torus(&self) -> bool {
        true
    }
    fn molecule(&self) -> Option<&dyn Molecule> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trans_is_the_minimum_and_geometry_is_fixed() {
        let b = Butane::new(300.0);
        assert!(Butane::potential_kelvin(std::f64::consts::PI).abs() < 1e-9);
        let gauche = Butane::potential_kelvin(60f64.to_radians());
        assert!(
            (gauche - (355.03 * 1.5 - 68.19 * 1.5)).abs() < 1e-9,
            "{gauche}"
        );
        for phi in [-2.0, 0.5, 3.0] {
            let x = b.positions(&[phi]);
            assert!((b.space.angles(&x)[0] - phi).abs() < 1e-12);
            let d = |a: usize, c: usize| {
                (0..3)
                    .map(|k| (x[3 * a + k] - x[3 * c + k]).powi(2))
                    .sum::<f64>()
                    .sqrt()
            };
            assert!((d(0, 1) - 1.54).abs() < 1e-12 && (d(2, 3) - 1.54).abs() < 1e-12);
        }
        // Derivatives against central differences (h = 1e-6; smooth trigonometric terms).
        let mut g = [0.0];
        for phi in [-2.5, 0.3, 1.9] {
            b.energy_grad(&[phi], &mut g);
            let h = 1e-6;
            let fd = (b.energy(&[phi + h]) - b.energy(&[phi - h])) / (2.0 * h);
            assert!((g[0] - fd).abs() < 1e-6 * fd.abs().max(1.0));
            let fd2 =
                (b.energy(&[phi + 1e-4]) - 2.0 * b.energy(&[phi]) + b.energy(&[phi - 1e-4])) / 1e-8;
            assert!((b.laplacian(&[phi]) - fd2).abs() < 1e-4 * fd2.abs().max(1.0));
        }
    }
}
