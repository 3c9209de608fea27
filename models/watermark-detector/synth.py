"""Synthetic training data for unmark's watermark detector.

Draws visible watermarks (text, rotated text, tiled rows, CJK, logos with a wordmark, tiled
logos) with random fonts, colours and opacities over photos that registry packages ship, and
composites them the way real marks are made: out = (1 - A) * photo + A * colour, in integers,
optionally followed by JPEG. The label is the mark's support, A > 0.

The photos come from scikit-image, scikit-learn and matplotlib (see PHOTOS). None of the photos
of the dev evaluation set (../shared/eval) is used, so that set stays a held-out measurement.
"""
import io
import os
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIRS = ["/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation",
             "/usr/share/fonts/opentype/noto"]
# Held out: astronaut, brick, camera, chelsea, coffee, coins, hubble_deep_field, ihc,
# motorcycle_*, rocket (skimage), flower (sklearn), aero (pywt; OpenCV's aero1/aero3 are left
# out too), face (scipy).
PHOTOS = [("skimage", f) for f in ["cell.png", "color.png", "grass.png", "gravel.png", "horse.png",
                                   "microaneurysms.png", "moon.png", "page.png", "retina.jpg",
                                   "text.png", "clock_motion.png"]]
PHOTOS += [("sklearn", "china.jpg"), ("matplotlib", "grace_hopper.jpg")]
# Debian opencv-doc's sample photos and ukui-wallpapers' photos.
OPENCV = "/usr/share/doc/opencv-doc/examples/data"
PHOTOS += [(OPENCV, f) for f in ["baboon.jpg", "fruits.jpg", "building.jpg", "butterfly.jpg",
                                 "home.jpg", "leuvenA.jpg", "messi5.jpg", "orange.jpg", "apple.jpg",
                                 "smarties.png", "starry_night.jpg", "stuff.jpg",
                                 "squirrel_cls.jpg", "HappyFish.jpg", "aloeL.jpg",
                                 "basketball1.png", "rubberwhale1.png", "graf1.png", "board.jpg",
                                 "lena.jpg", "pic1.png", "notes.png", "imageTextN.png"]]
WALLPAPERS = "/usr/share/backgrounds"
PHOTOS += [(WALLPAPERS, f) for f in ["2004default.jpg", "calla.png", "city.png", "desert.png",
                                     "firstgeneration.jpg", "goldfish.png", "rhythm.jpg",
                                     "string.jpg", "the-mouse.jpg", "rollpaper.png"]]

# More Debian wallpaper packages: MATE's nature photos, Lomiri's, and one size of each of
# Plasma's wallpapers (photos and renders, both useful as backgrounds a mark must be told from).
MATE = "/usr/share/backgrounds/mate/nature"
PHOTOS += [(MATE, f) for f in ["Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "Garden.jpg",
                               "GreenMeadow.jpg", "LadyBird.jpg", "RainDrops.jpg", "Storm.jpg",
                               "TwoWings.jpg", "Wood.jpg", "YellowFlower.jpg"]]
PHOTOS += [(WALLPAPERS, f) for f in ["Fossa_by_Jasper_Roks.jpg", "Infinite-Sea_by_Aury88.jpg",
                                     "Kleiber_by_Lukas_Baubkus.jpg",
                                     "Painting-Colors_by__herobrine7gamer.jpg"]]
PLASMA = "/usr/share/wallpapers"
PHOTOS += [(PLASMA, f + "/contents/images/1920x1080.jpg")
           for f in ["Autumn", "BytheWater", "ColdRipple", "DarkestHour", "EveningGlow",
                     "FallenLeaf", "FlyingKonqui", "Grey", "Kite", "OneStandsOut", "PastelHills",
                     "Path", "summer_1am"]]
# Ubuntu Touch 16.04's photo wallpapers (Debian lomiri-wallpapers-16.04) and GNOME's wood
# (gnome-backgrounds), added for the second and third rounds of training.
PHOTOS += [(WALLPAPERS, f) for f in [
    "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
    "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg",
    "analogpattern_by_Peter_Nerlich.jpg", "free_by_Peter_Nerlich.jpg",
    "friends_by_Aitzol_Berasategi.jpg", "greentock_by_Peter_Nerlich.jpg",
    "life_by_Aitzol_Berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
    "seeding_by_Clements_Engelhardt.jpg", "sunset_by_Aitzol_Berasategi.jpg",
    "umang_by_Abhishek_Mudgal.jpg", "gnome/wood-l.webp"]]

WORDS = ["SAMPLE", "PREVIEW", "DRAFT", "PROOF", "CONFIDENTIAL", "DO NOT COPY", "Copyright",
         "Licensed", "Stock", "Photo", "Studio", "Images", "Demo", "Watermark", "Property of",
         "All rights reserved", "Preview only", "Unlicensed", "Agency", "Media", "Pictures",
         "Creative", "Lens", "Shots", "Gallery"]
CJK_WORDS = ["水印", "版权所有", "样例图片", "图片来源", "示例", "禁止转载", "预览", "摄影", "著作権",
             "無断転載禁止", "見本", "사진", "저작권"]
NAMED_COLOURS = [(255, 255, 255), (0, 0, 0), (128, 128, 128), (200, 200, 200), (64, 64, 64),
                 (230, 230, 230)]


def package_dir(package):
    if package.startswith("/"):
        return package
    module = __import__(package)
    root = os.path.dirname(module.__file__)
    return {"skimage": os.path.join(root, "data"),
            "sklearn": os.path.join(root, "datasets", "images"),
            "matplotlib": os.path.join(root, "mpl-data", "sample_data")}[package]


def load_photos():
    photos = []
    for package, name in PHOTOS:
        path = os.path.join(package_dir(package), name)
        if not os.path.exists(path):
            continue
        img = Image.open(path).convert("RGB")
        if max(img.size) > 1200:
            img.thumbnail((1200, 1200), Image.LANCZOS)
        photos.append(np.asarray(img))
    return photos


def fonts():
    found = []
    for d in FONT_DIRS:
        for name in sorted(os.listdir(d)):
            if name.endswith((".ttf", ".ttc")) and "Math" not in name:
                found.append(os.path.join(d, name))
    latin = [f for f in found if "CJK" not in f]
    cjk = [f for f in found if "CJK" in f]
    return latin, cjk


def random_text(rng):
    r = rng.random()
    word = rng.choice(WORDS)
    if r < 0.25:
        return word
    if r < 0.4:
        return "www." + rng.choice(WORDS).lower().replace(" ", "") + rng.choice([".com", ".net", "-images.com"])
    if r < 0.5:
        return "@" + rng.choice(WORDS).lower().replace(" ", "") + str(rng.randint(1, 99))
    if r < 0.65:
        return "© " + rng.choice(WORDS) + " " + str(rng.randint(1990, 2030))
    if r < 0.8:
        return word + " " + rng.choice(WORDS)
    n = rng.randint(3, 12)
    return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789") for _ in range(n))


def cjk_text(rng):
    if rng.random() < 0.6:
        return rng.choice(CJK_WORDS) + (("：" + rng.choice(CJK_WORDS)) if rng.random() < 0.3 else "")
    return "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(2, 6)))


def text_layer(rng, text, font_path, size, angle):
    font = ImageFont.truetype(font_path, max(6, int(size)))
    box = font.getbbox(text)
    w, h = box[2] - box[0] + 4, box[3] - box[1] + 4
    layer = Image.new("L", (w, h), 0)
    ImageDraw.Draw(layer).text((2 - box[0], 2 - box[1]), text, fill=255, font=font)
    if angle:
        layer = layer.rotate(angle, resample=Image.BICUBIC, expand=True)
    return layer


def logo_layer(rng, size, latin):
    s = int(size)
    layer = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(layer)
    kind = rng.choice(["circle", "ring", "star", "rect", "triangle", "camera", "shield",
                       "hexagon", "diamond"])
    m = max(1, s // 12)
    if kind == "circle":
        d.ellipse([m, m, s - m, s - m], fill=255)
    elif kind == "ring":
        d.ellipse([m, m, s - m, s - m], outline=255, width=max(2, s // 10))
    elif kind == "star":
        c, pts = s / 2, []
        for k in range(10):
            r = (s / 2 - m) * (1.0 if k % 2 == 0 else 0.45)
            a = np.pi / 2 + k * np.pi / 5
            pts.append((c + r * np.cos(a), c - r * np.sin(a)))
        d.polygon(pts, fill=255)
    elif kind == "rect":
        d.rounded_rectangle([m, s // 4, s - m, s - s // 4], radius=s // 8, fill=255)
    elif kind == "triangle":
        d.polygon([(s / 2, m), (s - m, s - m), (m, s - m)], fill=255)
    elif kind == "shield":
        top, mid = s // 6, int(s * 0.55)
        d.polygon([(m, top), (s / 2, m), (s - m, top), (s - m, mid), (s / 2, s - m), (m, mid)],
                  fill=255)
    elif kind in ("hexagon", "diamond"):
        n, c, r = 6 if kind == "hexagon" else 4, s / 2, s / 2 - m
        turn = rng.uniform(0, np.pi / n)
        angles = [turn + 2 * np.pi * k / n for k in range(n)]
        pts = [(c + r * np.cos(a), c + r * np.sin(a)) for a in angles]
        if rng.random() < 0.5:
            d.polygon(pts, fill=255)
        else:
            d.polygon(pts, outline=255, width=max(2, s // 12))
    else:
        d.rounded_rectangle([m, s // 3, s - m, s - m], radius=s // 10, fill=255)
        d.rectangle([s // 3, s // 5, 2 * s // 3, s // 3], fill=255)
        d.ellipse([s // 3, s // 2 - s // 10, 2 * s // 3, s - s // 6], fill=0)
    if rng.random() < 0.4:
        # Letters cut out of the shape or drawn on it.
        font = ImageFont.truetype(rng.choice(latin), max(6, s // 3))
        text = "".join(rng.choice("ABCDEFGHKMPRSTWXYZ") for _ in range(rng.randint(1, 3)))
        box = font.getbbox(text)
        pos = ((s - (box[2] - box[0])) / 2 - box[0], (s - (box[3] - box[1])) / 2 - box[1])
        cut = kind in ("circle", "rect", "star", "shield")
        d.text(pos, text, fill=0 if cut else 255, font=font)
    if rng.random() < 0.5:
        word = text_layer(rng, random_text(rng), rng.choice(latin), s * rng.uniform(0.3, 0.6), 0)
        both = Image.new("L", (s + word.width + s // 8, max(s, word.height)), 0)
        both.paste(layer, (0, (both.height - s) // 2))
        both.paste(word, (s + s // 8, (both.height - word.height) // 2))
        layer = both
    return layer


def place(canvas, layer, x, y):
    """Adds `layer` (L) at (x, y) into `canvas` (float alpha), clipped."""
    a = np.asarray(layer, dtype=np.float32) / 255.0
    h, w = canvas.shape
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(w, x + a.shape[1]), min(h, y + a.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    sub = a[y0 - y:y1 - y, x0 - x:x1 - x]
    canvas[y0:y1, x0:x1] = np.maximum(canvas[y0:y1, x0:x1], sub)


def mark_alpha(rng, h, w, latin, cjk):
    """A watermark's alpha (0..1, before opacity) on an h x w canvas."""
    canvas = np.zeros((h, w), np.float32)
    style = rng.choice(["corner", "center", "tiled", "cjk", "logo_corner", "logo_center", "logo_tiled"])
    short = min(h, w)
    angle = rng.choice([0, 0, 0, rng.uniform(-45, 45)])
    if style in ("corner", "center", "tiled", "cjk"):
        if style == "cjk":
            text, font = cjk_text(rng), rng.choice(cjk)
        else:
            text, font = random_text(rng), rng.choice(latin)
        size = short * (rng.uniform(0.03, 0.08) if style in ("corner", "cjk", "tiled") else rng.uniform(0.06, 0.16))
        layer = text_layer(rng, text, font, size, angle if style != "corner" else 0)
    else:
        size = short * (rng.uniform(0.08, 0.2) if style != "logo_center" else rng.uniform(0.2, 0.45))
        layer = logo_layer(rng, size, latin)
        if angle and rng.random() < 0.5:
            layer = layer.rotate(angle, resample=Image.BICUBIC, expand=True)
    if style in ("tiled", "logo_tiled"):
        gx = layer.width + int(rng.uniform(0.2, 1.5) * layer.width)
        gy = layer.height + int(rng.uniform(0.5, 3.0) * layer.height)
        shift = rng.choice([0, gx // 2])
        ox, oy = rng.randint(-gx, 0), rng.randint(-gy, 0)
        for row, y in enumerate(range(oy, h, gy)):
            for x in range(ox + (shift if row % 2 else 0), w, gx):
                place(canvas, layer, x, y)
    elif style in ("center", "logo_center"):
        place(canvas, layer, (w - layer.width) // 2 + rng.randint(-w // 8, w // 8),
              (h - layer.height) // 2 + rng.randint(-h // 8, h // 8))
    else:
        m = int(short * rng.uniform(0.01, 0.06))
        xs = [m, w - layer.width - m, (w - layer.width) // 2]
        ys = [m, h - layer.height - m]
        place(canvas, layer, rng.choice(xs), rng.choice(ys))
    if rng.random() < 0.15:
        # A soft edge or glow some marks have.
        img = Image.fromarray((canvas * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.2)))
        canvas = np.asarray(img, dtype=np.float32) / 255.0
    return canvas


def sample(rng, photos, latin, cjk, size):
    """One training pair: an RGB uint8 image (size x size) and its mask (bool).

    A whole picture of `virtual` x `virtual` pixels (256 to 704, about the scale the stage
    sees images at, 512) is made first: a photo scaled to cover it, the mark drawn over all of it. The
    sample is a crop of that picture, so photo detail and mark size keep the proportions of a
    real watermarked image."""
    virtual = max(size, int(rng.uniform(256, 704)))
    photo = Image.fromarray(rng.choice(photos))
    scale = virtual / min(photo.size) * rng.uniform(1.0, 2.0)
    nw, nh = max(virtual, round(photo.width * scale)), max(virtual, round(photo.height * scale))
    x, y = rng.randint(0, nw - virtual), rng.randint(0, nh - virtual)
    # Only the part that is kept is resampled (the photo scaled to nw x nh, then cropped).
    sx, sy = photo.width / nw, photo.height / nh
    box = (x * sx, y * sy, (x + virtual) * sx, (y + virtual) * sy)
    whole = np.asarray(photo.resize((virtual, virtual), Image.LANCZOS, box=box), dtype=np.int32)
    if rng.random() < 0.5:
        whole = whole[:, ::-1]
    if rng.random() < 0.3:
        gain = np.array([rng.uniform(0.7, 1.3) for _ in range(3)])
        whole = np.clip(whole * gain, 0, 255).astype(np.int32)
    if rng.random() < 0.15:
        # Some pictures carry no mark at all: the detector must learn to say so.
        cx, cy = rng.randint(0, virtual - size), rng.randint(0, virtual - size)
        out = whole[cy:cy + size, cx:cx + size].astype(np.uint8)
        return maybe_jpeg(rng, out), np.zeros((size, size), bool)
    alpha_full = mark_alpha(rng, virtual, virtual, latin, cjk)
    ys, xs = np.nonzero(alpha_full > 0)
    if len(ys) and rng.random() < 0.7:
        k = rng.randrange(len(ys))
        cx = min(max(xs[k] - size // 2, 0), virtual - size)
        cy = min(max(ys[k] - size // 2, 0), virtual - size)
    else:
        cx, cy = rng.randint(0, virtual - size), rng.randint(0, virtual - size)
    clean = whole[cy:cy + size, cx:cx + size]
    alpha = alpha_full[cy:cy + size, cx:cx + size]
    opacity = rng.uniform(0.25, 0.9)
    a = np.round(alpha * opacity * 255).astype(np.int32)
    if rng.random() < 0.5:
        colour = np.array(rng.choice(NAMED_COLOURS))
    else:
        colour = np.array([rng.randint(0, 255) for _ in range(3)])
    out = (clean * (255 - a[..., None]) + colour[None, None, :] * a[..., None]) / 255.0
    out = np.floor(out + 0.5).clip(0, 255).astype(np.uint8)
    return maybe_jpeg(rng, out), a > 0


def maybe_jpeg(rng, img):
    if rng.random() < 0.2:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=rng.randint(70, 95))
        buf.seek(0)
        return np.asarray(Image.open(buf).convert("RGB"))
    return img


def batch_worker(args):
    seed, count, size = args
    rng = random.Random(seed)
    photos = load_photos()
    latin, cjk = fonts()
    xs, ys = [], []
    for _ in range(count):
        x, y = sample(rng, photos, latin, cjk, size)
        xs.append(x)
        ys.append(y)
    return np.stack(xs), np.stack(ys)


if __name__ == "__main__":
    x, y = batch_worker((1, 16, 160))
    grid = np.concatenate([np.concatenate(list(x[i * 4:(i + 1) * 4]), 1) for i in range(4)], 0)
    Image.fromarray(grid).save("/tmp/synth_grid.png")
    print(y.mean())
