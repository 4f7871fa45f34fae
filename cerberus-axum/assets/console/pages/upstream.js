// The upstream of a workspace as a form: a Streamable HTTP URL with its headers, or a command the
// gateway runs (stdio) with its arguments and environment. Secret values come back from the API as
// `********`, which the API reads as "keep the stored value" when it is sent back unchanged.

import { field, h } from '../dom.js';

/** `Name: value` lines from a map. */
function lines(map, separator) {
  return Object.entries(map || {}).map(([name, value]) => `${name}${separator}${value}`).join('\n');
}

/** A map from `Name: value` lines; a line without the separator is an error naming it. */
function parseLines(text, separator, what) {
  const map = {};
  text.split('\n').map((line) => line.trim()).filter(Boolean).forEach((line) => {
    const at = line.indexOf(separator);
    if (at <= 0) throw new Error(`each ${what} is NAME${separator}VALUE: "${line}" is not`);
    map[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  });
  return map;
}

/** The upstream fields, filled from `upstream` if given, and a function that reads them back. */
export function upstreamFields(upstream = { url: '' }) {
  const stdio = 'command' in upstream;
  const kind = h('select', { name: 'kind' },
    h('option', { value: 'http', selected: !stdio }, 'Streamable HTTP'),
    h('option', { value: 'stdio', selected: stdio }, 'Command (stdio)'));
  const url = h('input', { type: 'url', name: 'url', value: upstream.url || '', placeholder: 'https://mcp.example.com/mcp' });
  const headers = h('textarea', { name: 'headers', rows: 2 }, lines(upstream.headers, ': '));
  const command = h('input', { type: 'text', name: 'command', value: upstream.command || '' });
  const args = h('textarea', { name: 'args', rows: 2 }, (upstream.args || []).join('\n'));
  const env = h('textarea', { name: 'env', rows: 2 }, lines(upstream.env, '='));
  const http = h('fieldset', {}, h('legend', {}, 'Streamable HTTP'),
    field('URL', url),
    field('Headers', headers, 'One "Name: value" per line, sent with every request (an upstream credential).'));
  const command_ = h('fieldset', {}, h('legend', {}, 'Command'),
    field('Program', command),
    field('Arguments', args, 'One per line.'),
    field('Environment', env, 'One NAME=value per line.'));
  const shown = () => {
    http.hidden = kind.value !== 'http';
    command_.hidden = kind.value !== 'stdio';
  };
  kind.addEventListener('change', shown);
  shown();
  const element = h('div', { class: 'upstream' }, field('Upstream', kind), http, command_);
  const read = () => {
    if (kind.value === 'http') {
      const value = { url: url.value.trim() };
      const parsed = parseLines(headers.value, ':', 'header');
      if (Object.keys(parsed).length) value.headers = parsed;
      return value;
    }
    const value = { command: command.value.trim() };
    const list = args.value.split('\n').map((a) => a.trim()).filter(Boolean);
    if (list.length) value.args = list;
    const parsed = parseLines(env.value, '=', 'variable');
    if (Object.keys(parsed).length) value.env = parsed;
    return value;
  };
  return { element, read };
}

/** An upstream in one line. */
export function describeUpstream(upstream) {
  if ('url' in upstream) return upstream.url;
  return [upstream.command, ...(upstream.args || [])].join(' ');
}
