// Line icons (24x24, stroked with currentColor), built with createElementNS
// from constant shapes: no markup parsing, no files from elsewhere. Shapes
// follow the Lucide icon set (ISC licence).

const SHAPES = {
  mic: [
    ['path', { d: 'M12 2a3 3 0 0 0-3 3v7a3 3 0 0 0 6 0V5a3 3 0 0 0-3-3Z' }],
    ['path', { d: 'M19 10v2a7 7 0 0 1-14 0v-2' }],
    ['path', { d: 'M12 19v3' }],
  ],
  'mic-off': [
    ['path', { d: 'M2 2l20 20' }],
    ['path', { d: 'M18.89 13.23A7.12 7.12 0 0 0 19 12v-2' }],
    ['path', { d: 'M5 10v2a7 7 0 0 0 12 5' }],
    ['path', { d: 'M15 9.34V5a3 3 0 0 0-5.68-1.33' }],
    ['path', { d: 'M9 9v3a3 3 0 0 0 5.12 2.12' }],
    ['path', { d: 'M12 19v3' }],
  ],
  video: [
    ['path', { d: 'm16 13 5.22 3.48a.5.5 0 0 0 .78-.42V7.87a.5.5 0 0 0-.75-.43L16 10.5' }],
    ['rect', { x: 2, y: 6, width: 14, height: 12, rx: 2 }],
  ],
  'video-off': [
    ['path', { d: 'M10.66 6H14a2 2 0 0 1 2 2v2.5l5.25-3.06a.5.5 0 0 1 .75.43v8.2' }],
    ['path', { d: 'M16 16a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2h2' }],
    ['path', { d: 'm2 2 20 20' }],
  ],
  'phone-off': [
    ['path', { d: 'M3.6 15.3c-1.1-1.1-1.1-2.7.1-3.6 4.8-3.7 11.8-3.7 16.6 0 1.2.9 1.2 2.5.1 3.6l-1.2 1.2a1.5 1.5 0 0 1-2 .1l-1.8-1.4a1.5 1.5 0 0 1-.6-1.3v-1.6a10.4 10.4 0 0 0-5.6 0v1.6a1.5 1.5 0 0 1-.6 1.3l-1.8 1.4a1.5 1.5 0 0 1-2-.1Z' }],
  ],
  users: [
    ['path', { d: 'M16 21v-2a4 4 0 0 0-4-4H6a4 4 0 0 0-4 4v2' }],
    ['circle', { cx: 9, cy: 7, r: 4 }],
    ['path', { d: 'M22 21v-2a4 4 0 0 0-3-3.87' }],
    ['path', { d: 'M16 3.13a4 4 0 0 1 0 7.75' }],
  ],
  link: [
    ['path', { d: 'M10 13a5 5 0 0 0 7.54.54l3-3a5 5 0 0 0-7.07-7.07l-1.72 1.71' }],
    ['path', { d: 'M14 11a5 5 0 0 0-7.54-.54l-3 3a5 5 0 0 0 7.07 7.07l1.71-1.71' }],
  ],
  x: [
    ['path', { d: 'M18 6 6 18' }],
    ['path', { d: 'm6 6 12 12' }],
  ],
  plus: [
    ['path', { d: 'M5 12h14' }],
    ['path', { d: 'M12 5v14' }],
  ],
  'arrow-right': [
    ['path', { d: 'M5 12h14' }],
    ['path', { d: 'm12 5 7 7-7 7' }],
  ],
  lock: [
    ['rect', { x: 3, y: 11, width: 18, height: 11, rx: 2 }],
    ['path', { d: 'M7 11V7a5 5 0 0 1 10 0v4' }],
  ],
  hand: [
    ['path', { d: 'M18 11V6a2 2 0 0 0-4 0v5' }],
    ['path', { d: 'M14 10V4a2 2 0 0 0-4 0v6' }],
    ['path', { d: 'M10 10.5V6a2 2 0 0 0-4 0v8' }],
    ['path', { d: 'M18 8a2 2 0 1 1 4 0v6a8 8 0 0 1-8 8h-2c-2.8 0-4.5-.86-5.99-2.34l-3.6-3.6a2 2 0 0 1 2.83-2.82L7 15' }],
  ],
  message: [
    ['path', { d: 'M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z' }],
  ],
  shield: [
    ['path', { d: 'M20 13c0 5-3.5 7.5-7.66 8.95a1 1 0 0 1-.67-.01C7.5 20.5 4 18 4 13V6a1 1 0 0 1 1-1c2 0 4.5-1.2 6.24-2.72a1.17 1.17 0 0 1 1.52 0C14.51 3.81 17 5 19 5a1 1 0 0 1 1 1z' }],
  ],
  server: [
    ['rect', { x: 2, y: 2, width: 20, height: 8, rx: 2 }],
    ['rect', { x: 2, y: 14, width: 20, height: 8, rx: 2 }],
    ['path', { d: 'M6 6h.01' }],
    ['path', { d: 'M6 18h.01' }],
  ],
  globe: [
    ['circle', { cx: 12, cy: 12, r: 10 }],
    ['path', { d: 'M12 2a14.5 14.5 0 0 0 0 20 14.5 14.5 0 0 0 0-20' }],
    ['path', { d: 'M2 12h20' }],
  ],
  sliders: [
    ['path', { d: 'M21 4h-7' }], ['path', { d: 'M10 4H3' }],
    ['path', { d: 'M21 12h-9' }], ['path', { d: 'M8 12H3' }],
    ['path', { d: 'M21 20h-5' }], ['path', { d: 'M12 20H3' }],
    ['path', { d: 'M14 2v4' }], ['path', { d: 'M8 10v4' }], ['path', { d: 'M16 18v4' }],
  ],
  alert: [
    ['circle', { cx: 12, cy: 12, r: 10 }],
    ['path', { d: 'M12 8v4' }],
    ['path', { d: 'M12 16h.01' }],
  ],
};

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An <svg> element for icon `name`, `size` CSS pixels wide, hidden from screen readers. */
export function icon(name, size = 20) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  for (const [k, v] of Object.entries({
    viewBox: '0 0 24 24', width: size, height: size, fill: 'none', stroke: 'currentColor',
    'stroke-width': 2, 'stroke-linecap': 'round', 'stroke-linejoin': 'round', 'aria-hidden': 'true',
  })) svg.setAttribute(k, String(v));
  svg.classList.add('icon');
  for (const [tag, attrs] of SHAPES[name] || []) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    svg.appendChild(el);
  }
  return svg;
}

/** Replaces the children of every `[data-icon]` element in `root` with its icon. */
export function fillIcons(root = document) {
  for (const el of root.querySelectorAll('[data-icon]')) {
    el.replaceChildren(icon(el.dataset.icon, Number(el.dataset.size) || 20));
  }
}

/** Sets the icon of an element that holds one `[data-icon]` slot (e.g. a toggle button). */
export function setIcon(el, name) {
  const slot = el.querySelector('[data-icon]');
  if (!slot || slot.dataset.current === name) return;
  slot.dataset.current = name;
  slot.dataset.icon = name;
  slot.replaceChildren(icon(name, Number(slot.dataset.size) || 20));
}
