// The draw-a-digit page: draw with pointer events, send the pad as a PNG to /api/predict
// while drawing (at most one request in flight), or send an image file chosen with the
// upload button as it is (a colour photo for a colour model), and show what comes back: the
// input the model sees (grey, or in colour for a colour model), its answer and feature maps.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
let drawing = false, last = null, pending = false, again = false, info = null;

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  document.getElementById("predicted").textContent = "";
  document.getElementById("error").textContent = "";
  showBars(null);
  drawInput(null);
  document.getElementById("layers").innerHTML = "";
  for (const id of ["says-hint", "maps-hint"]) document.getElementById(id).hidden = false;
}

function position(event) {
  const r = pad.getBoundingClientRect();
  return { x: (event.clientX - r.left) * pad.width / r.width, y: (event.clientY - r.top) * pad.height / r.height };
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  last = position(event);
  pad.setPointerCapture(event.pointerId);
  stroke(last, last);
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const p = position(event);
  stroke(last, p);
  last = p;
  ask();
});
for (const end of ["pointerup", "pointercancel", "pointerleave"]) {
  pad.addEventListener(end, () => { if (drawing) { drawing = false; ask(); } });
}
document.getElementById("clear").addEventListener("click", clearPad);

function stroke(a, b) {
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 18;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(a.x, a.y);
  ctx.lineTo(b.x, b.y);
  ctx.stroke();
}

async function send(blob, type) {
  const response = await fetch("/api/predict", { method: "POST", body: blob, headers: { "Content-Type": type } });
  const body = await response.json();
  if (!response.ok) {
    document.getElementById("error").textContent = body.error;
  } else {
    document.getElementById("error").textContent = "";
    show(body);
  }
}

function ask() {
  if (pending) { again = true; return; }
  pending = true;
  pad.toBlob(async (blob) => {
    try {
      await send(blob, "image/png");
    } catch (e) {
      document.getElementById("error").textContent = "the server did not answer: " + e;
    } finally {
      pending = false;
      if (again) { again = false; ask(); }
    }
  }, "image/png");
}

// An image file of the user's: sent as it is (the server prepares it as the training images
// were), and shown on the pad, fitted inside it, where drawing may go on.
document.getElementById("upload").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  const url = URL.createObjectURL(file);
  const picture = new Image();
  picture.onload = () => {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    const scale = Math.min(pad.width / picture.width, pad.height / picture.height);
    const w = picture.width * scale, h = picture.height * scale;
    ctx.drawImage(picture, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    URL.revokeObjectURL(url);
  };
  picture.onerror = () => URL.revokeObjectURL(url);
  picture.src = url;
  try {
    await send(file, file.type || "application/octet-stream");
  } catch (e) {
    document.getElementById("error").textContent = "the server did not answer: " + e;
  }
});

function show(answer) {
  for (const id of ["says-hint", "maps-hint"]) document.getElementById(id).hidden = true;
  document.getElementById("predicted").textContent = answer.class;
  showBars(answer.probabilities);
  drawInput(answer.input);
  if (answer.prepared) document.getElementById("input-hint").textContent = answer.prepared;
  const layers = document.getElementById("layers");
  layers.innerHTML = "";
  for (const layer of answer.layers) {
    const box = document.createElement("div");
    box.className = "layer";
    box.dataset.layer = layer.index;
    const title = document.createElement("h3");
    title.textContent = `layer ${layer.index}: ${layer.name}, ${layer.shape.join("x")}`;
    title.style.fontSize = ".85rem";
    const grid = document.createElement("div");
    grid.className = "grid";
    for (const map of layer.maps) grid.appendChild(image(map));
    box.append(title, grid);
    layers.appendChild(box);
  }
}

function showBars(probabilities) {
  const bars = document.getElementById("bars");
  const classes = info ? info.classes : [];
  if (!bars.children.length) {
    for (const [i, name] of classes.entries()) {
      const row = document.createElement("div");
      row.className = "bar";
      row.id = `bar-${i}`;
      row.dataset.class = name;
      row.innerHTML = `<span class="label"></span><span class="track"><span class="fill"></span></span><span class="value"></span>`;
      row.querySelector(".label").textContent = name;
      bars.appendChild(row);
    }
  }
  const best = probabilities ? Object.entries(probabilities).sort((a, b) => b[1] - a[1])[0][0] : null;
  for (const row of bars.children) {
    const p = probabilities ? probabilities[row.dataset.class] : 0;
    row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    row.querySelector(".value").textContent = probabilities ? `${(100 * p).toFixed(1)}%` : "";
    row.dataset.probability = p;
    row.classList.toggle("best", row.dataset.class === best);
  }
}

// A canvas of an image in [0, 1]: rows (H x W) grey, or channels (C x H x W): three are red,
// green and blue, one is grey.
function image(rows) {
  const colour = Array.isArray(rows[0][0]);
  const planes = colour ? rows : [rows];
  const h = planes[0].length, w = planes[0][0].length;
  const [r, g, b] = planes.length >= 3 ? planes : [planes[0], planes[0], planes[0]];
  const c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  const pixels = c.getContext("2d").createImageData(w, h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const k = 4 * (y * w + x);
    pixels.data[k] = Math.round(255 * r[y][x]);
    pixels.data[k + 1] = Math.round(255 * g[y][x]);
    pixels.data[k + 2] = Math.round(255 * b[y][x]);
    pixels.data[k + 3] = 255;
  }
  c.getContext("2d").putImageData(pixels, 0, 0);
  return c;
}

function drawInput(rows) {
  const target = document.getElementById("input");
  const t = target.getContext("2d");
  t.fillStyle = "#000";
  t.fillRect(0, 0, target.width, target.height);
  if (!rows) return;
  const picture = image(rows);
  const scale = Math.min(target.width / picture.width, target.height / picture.height);
  const w = picture.width * scale, h = picture.height * scale;
  t.imageSmoothingEnabled = false;
  t.drawImage(picture, (target.width - w) / 2, (target.height - h) / 2, w, h);
}

fetch("/api/info").then((r) => r.json()).then((i) => {
  info = i;
  const accuracy = i.test_accuracy == null ? "" :
    `, ${(100 * i.test_accuracy).toFixed(2)}% test accuracy (${i.checkpoint}, step ${i.step})`;
  document.getElementById("model-info").textContent =
    `${i.model} on ${i.dataset}: ${i.parameters.toLocaleString()} parameters${accuracy}`;
  document.getElementById("layer-list").textContent = i.layers.map((l, n) => `(${n}) ${l}`).join("\n");
  if (i.curves) { const img = document.getElementById("curves"); img.src = "/curves.png"; img.hidden = false; }
  clearPad();
  document.body.dataset.ready = "true";
});
