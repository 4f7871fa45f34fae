// Building the page from nodes (never from markup, so that text from the API is only ever text), and
// the small pieces every page shares: headings, tables, forms, notices.

/** An element: `h('a', {href: '#/x'}, 'text', child)`. `on*` attributes take listeners. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (value === true) {
      element.setAttribute(name, '');
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

/** An SVG element, as `h` makes HTML ones. */
export function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces what `element` holds. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

let nextId = 0;

/** A labelled form field; `control` is an input, select or textarea made with `h`. */
export function field(label, control, hint) {
  nextId += 1;
  const id = control.id || `field-${nextId}`;
  control.id = id;
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) control.setAttribute('aria-describedby', hintId);
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    control,
    hint ? h('small', { id: hintId }, hint) : null);
}

/** A table with a caption, column headings and rows of cells (text or nodes). */
export function table(caption, headings, rows, empty = 'Nothing yet.') {
  if (rows.length === 0) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'scroll' },
    h('table', {},
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, headings.map((text) => h('th', { scope: 'col' }, text)))),
      h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((cell) => h('td', {}, cell)))))));
}

/** The page's title, which is also the document's. */
export function title(text) {
  document.title = `${text} · Cerberus console`;
  return h('h1', {}, text);
}

let shownAt = 0;

/** A message in the live region, read out by screen readers; errors stay until the next one. */
export function notify(text, kind = 'info') {
  const status = document.getElementById('status');
  shownAt = Date.now();
  replace(status, text ? h('p', { class: `notice ${kind}` }, text) : null);
  if (kind !== 'error' && text) {
    setTimeout(() => {
      if (status.textContent === text) replace(status);
    }, 5000);
  }
}

/** Clears a message shown more than a moment ago: called when another page opens, so that a
 * message said just before the page changed (a deletion that leaves the page) stays. */
export function clearStaleNotice() {
  if (Date.now() - shownAt > 1500) replace(document.getElementById('status'));
}

/** A time as the reader's locale shows it. */
export function when(value) {
  if (value === undefined || value === null) return '';
  const date = typeof value === 'number' ? new Date(value) : new Date(String(value));
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

/** A button that runs `action`, disabled while it runs, reporting an error in the live region. */
export function button(text, action, attributes = {}) {
  const element = h('button', { type: 'button', ...attributes }, text);
  element.addEventListener('click', async () => {
    element.disabled = true;
    try {
      await action();
    } catch (error) {
      notify(error.message, 'error');
    } finally {
      element.disabled = false;
    }
  });
  return element;
}

/** A form whose submission runs `action` with its fields, reporting an error next to it. */
export function form(label, fields, submit, action) {
  const error = h('p', { class: 'error', role: 'alert' });
  const submitButton = h('button', { type: 'submit' }, submit);
  const element = h('form', { 'aria-label': label, novalidate: true }, fields, submitButton, error);
  element.addEventListener('submit', async (event) => {
    event.preventDefault();
    replace(error);
    submitButton.disabled = true;
    try {
      await action(new FormData(element));
    } catch (failure) {
      replace(error, failure.message);
    } finally {
      submitButton.disabled = false;
    }
  });
  return element;
}

/** Copies `text` to the clipboard, saying so. */
export async function copy(text) {
  await navigator.clipboard.writeText(text);
  notify('Copied.');
}

/** `key=value` lines of a label map. */
export function labelLines(labels) {
  return Object.entries(labels || {}).map(([key, value]) => `${key}=${value}`).join('\n');
}

/** A label map from `key=value` lines; a line without `=` is an error naming it. */
export function parseLabels(text) {
  const labels = {};
  for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const at = line.indexOf('=');
    if (at <= 0) throw new Error(`each label is key=value: "${line}" is not`);
    labels[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return labels;
}
