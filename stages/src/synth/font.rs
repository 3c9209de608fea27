//! A stroke font: capitals, digits and a little punctuation as polylines on a grid 4 units
//! wide and 6 tall (y down). Marks drawn from it have the stroke widths, joins and
//! anti-aliased edges of text without a font file.

/// Each glyph's strokes: `;` between strokes, a space between points, `x,y` per point.
const GLYPHS: &[(char, &str)] = &[
    ('A', "0,6 2,0 4,6;0.7,4 3.3,4"),
    (
        'B',
        "0,0 0,6 3,6 4,5 4,4 3,3 0,3;0,0 3,0 3.8,0.8 3.8,2.2 3,3",
    ),
    ('C', "4,1 3,0 1,0 0,1 0,5 1,6 3,6 4,5"),
    ('D', "0,0 0,6 2.5,6 4,4.5 4,1.5 2.5,0 0,0"),
    ('E', "4,0 0,0 0,6 4,6;0,3 3,3"),
    ('F', "4,0 0,0 0,6;0,3 3,3"),
    ('G', "4,1 3,0 1,0 0,1 0,5 1,6 3,6 4,5 4,3 2.2,3"),
    ('H', "0,0 0,6;4,0 4,6;0,3 4,3"),
    ('I', "2,0 2,6;1,0 3,0;1,6 3,6"),
    ('J', "4,0 4,5 3,6 1,6 0,5"),
    ('K', "0,0 0,6;4,0 0,3.5;1.3,2.7 4,6"),
    ('L', "0,0 0,6 4,6"),
    ('M', "0,6 0,0 2,3.5 4,0 4,6"),
    ('N', "0,6 0,0 4,6 4,0"),
    ('O', "1,0 3,0 4,1 4,5 3,6 1,6 0,5 0,1 1,0"),
    ('P', "0,6 0,0 3,0 4,1 4,2 3,3 0,3"),
    ('Q', "1,0 3,0 4,1 4,5 3,6 1,6 0,5 0,1 1,0;2.5,4.5 4,6.3"),
    ('R', "0,6 0,0 3,0 4,1 4,2 3,3 0,3;2,3 4,6"),
    ('S', "4,1 3,0 1,0 0,1 0,2 1,3 3,3 4,4 4,5 3,6 1,6 0,5"),
    ('T', "0,0 4,0;2,0 2,6"),
    ('U', "0,0 0,5 1,6 3,6 4,5 4,0"),
    ('V', "0,0 2,6 4,0"),
    ('W', "0,0 1,6 2,2.5 3,6 4,0"),
    ('X', "0,0 4,6;4,0 0,6"),
    ('Y', "0,0 2,3 4,0;2,3 2,6"),
    ('Z', "0,0 4,0 0,6 4,6"),
    ('0', "1,0 3,0 4,1 4,5 3,6 1,6 0,5 0,1 1,0;0.6,5 3.4,1"),
    ('1', "1,1 2,0 2,6;1,6 3,6"),
    ('2', "0,1 1,0 3,0 4,1 4,2 0,6 4,6"),
    ('3', "0,1 1,0 3,0 4,1 4,2 3,3 4,4 4,5 3,6 1,6 0,5;1.5,3 3,3"),
    ('4', "3,6 3,0 0,4 4,4"),
    ('5', "4,0 0,0 0,3 3,3 4,4 4,5 3,6 0,6"),
    ('6', "4,1 3,0 1,0 0,1 0,5 1,6 3,6 4,5 4,4 3,3 0,3"),
    ('7', "0,0 4,0 1.5,6"),
    (
        '8',
        "1,3 0,2 0,1 1,0 3,0 4,1 4,2 3,3 1,3 0,4 0,5 1,6 3,6 4,5 4,4 3,3",
    ),
    ('9', "0,5 1,6 3,6 4,5 4,1 3,0 1,0 0,1 0,2 1,3 4,3"),
    ('-', "0.5,3.5 3.5,3.5"),
    ('.', "2,5.7 2,6"),
];

/// The horizontal advance of a glyph, in grid units.
pub(super) const ADVANCE: f32 = 5.5;
/// The height of a capital, in grid units.
pub(super) const HEIGHT: f32 = 6.0;

/// The strokes of `c` (capitalised) as polylines in grid units, none for a space or a
/// character the font lacks.
pub(super) fn strokes(c: char) -> Vec<Vec<(f32, f32)>> {
    let upper = c.to_ascii_uppercase();
    let Some((_, spec)) = GLYPHS.iter().find(|(g, _)| *g == upper) else {
        return Vec::new();
    };
    spec.split(';')
        .map(|stroke| {
            stroke
                .split(' ')
                .filter_map(|point| {
                    let (x, y) = point.split_once(',')?;
                    Some((x.parse().ok()?, y.parse().ok()?))
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_glyph_parses_within_its_cell() {
        for (c, _) in GLYPHS {
            let strokes = strokes(*c);
            assert!(!strokes.is_empty(), "{c}");
            for p in strokes.iter().flatten() {
                assert!(
                    (0.0..=4.0).contains(&p.0) && (0.0..=6.5).contains(&p.1),
                    "{c}"
                );
            }
        }
        assert!(strokes(' ').is_empty());
        assert_eq!(strokes('a'), strokes('A'));
    }
}
