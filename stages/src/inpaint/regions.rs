//! Connected mask regions and the crops the inpainter works on (IOPaint's CROP strategy).

use crate::Mask;

/// A rectangle `[x0, x1) x [y0, y1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left, inclusive.
    pub x0: u32,
    /// Top, inclusive.
    pub y0: u32,
    /// Right, exclusive.
    pub x1: u32,
    /// Bottom, exclusive.
    pub y1: u32,
}

impl Rect {
    /// Width.
    pub fn width(&self) -> u32 {
        self.x1 - self.x0
    }

    /// Height.
    pub fn height(&self) -> u32 {
        self.y1 - self.y0
    }

    fn overlaps(&self, other: &Rect) -> bool {
        self.x0 < other.x1 && other.x0 < self.x1 && self.y0 < other.y1 && other.y0 < self.y1
    }

    fn union(&self, other: &Rect) -> Rect {
        Rect {
            x0: self.x0.min(other.x0),
            y0: self.y0.min(other.y0),
            x1: self.x1.max(other.x1),
            y1: self.y1.max(other.y1),
        }
    }

    fn grow(&self, margin: u32, width: u32, height: u32) -> Rect {
        Rect {
            x0: self.x0.saturating_sub(margin),
            y0: self.y0.saturating_sub(margin),
            x1: (self.x1 + margin).min(width),
            y1: (self.y1 + margin).min(height),
        }
    }
}

/// The smallest rectangle holding every marked pixel; `None` for an empty mask.
pub fn bounding_box(mask: &Mask) -> Option<Rect> {
    let w = mask.width as usize;
    let mut rect: Option<Rect> = None;
    for (y, row) in mask.data.chunks_exact(w.max(1)).enumerate() {
        let (Some(first), Some(last)) = (
            row.iter().position(|&v| v != 0),
            row.iter().rposition(|&v| v != 0),
        ) else {
            continue;
        };
        let line = Rect {
            x0: first as u32,
            y0: y as u32,
            x1: last as u32 + 1,
            y1: y as u32 + 1,
        };
        rect = Some(rect.map_or(line, |r| r.union(&line)));
    }
    rect
}

/// Labels the 8-connected components of `mask`: 0 outside, 1..=count inside.
pub fn label(mask: &Mask) -> (Vec<u32>, usize) {
    let (w, h) = (mask.width as usize, mask.height as usize);
    let mut labels = vec![0u32; w * h];
    let mut count = 0;
    let mut stack = Vec::new();
    for start in 0..w * h {
        if mask.data[start] == 0 || labels[start] != 0 {
            continue;
        }
        count += 1;
        labels[start] = count as u32;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let j = ny * w + nx;
                    if mask.data[j] != 0 && labels[j] == 0 {
                        labels[j] = count as u32;
                        stack.push(j);
                    }
                }
            }
        }
    }
    (labels, count)
}

/// Bounding boxes of the 8-connected components of `mask`.
pub fn components(mask: &Mask) -> Vec<Rect> {
    let (labels, count) = label(mask);
    let w = mask.width as usize;
    let mut boxes: Vec<Option<Rect>> = vec![None; count];
    for (i, &l) in labels.iter().enumerate() {
        if l == 0 {
            continue;
        }
        let (x, y) = ((i % w) as u32, (i / w) as u32);
        let pixel = Rect {
            x0: x,
            y0: y,
            x1: x + 1,
            y1: y + 1,
        };
        let slot = &mut boxes[l as usize - 1];
        *slot = Some(slot.map_or(pixel, |r| r.union(&pixel)));
    }
    boxes.into_iter().flatten().collect()
}

/// The crops to inpaint: each component's box grown by `margin`, with overlapping crops
/// merged until none overlap. Every masked pixel inside a crop then belongs to that crop, so
/// crops can be filled independently and in parallel.
pub fn crops(mask: &Mask, margin: u32) -> Vec<Rect> {
    let mut rects: Vec<Rect> = components(mask)
        .iter()
        .map(|r| r.grow(margin, mask.width, mask.height))
        .collect();
    loop {
        let mut merged = false;
        let mut i = 0;
        while i < rects.len() {
            let mut j = i + 1;
            while j < rects.len() {
                if rects[i].overlaps(&rects[j]) {
                    let other = rects.swap_remove(j);
                    rects[i] = rects[i].union(&other);
                    merged = true;
                } else {
                    j += 1;
                }
            }
            i += 1;
        }
        if !merged {
            return rects;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_with(points: &[(u32, u32)], w: u32, h: u32) -> Mask {
        let mut m = Mask::new(w, h);
        for &(x, y) in points {
            m.set(x, y, true);
        }
        m
    }

    #[test]
    fn diagonal_pixels_are_one_component() {
        let m = mask_with(&[(1, 1), (2, 2), (7, 7)], 10, 10);
        let c = components(&m);
        assert_eq!(c.len(), 2);
        assert!(c.contains(&Rect {
            x0: 1,
            y0: 1,
            x1: 3,
            y1: 3
        }));
    }

    #[test]
    fn near_crops_merge_far_ones_do_not() {
        let m = mask_with(&[(2, 2), (6, 2), (40, 40)], 50, 50);
        let crops = crops(&m, 3);
        assert_eq!(crops.len(), 2);
        assert!(crops.contains(&Rect {
            x0: 0,
            y0: 0,
            x1: 10,
            y1: 6
        }));
        assert!(crops.contains(&Rect {
            x0: 37,
            y0: 37,
            x1: 44,
            y1: 44
        }));
    }

    #[test]
    fn empty_mask_has_no_crops() {
        assert!(crops(&Mask::new(5, 5), 2).is_empty());
    }
}
