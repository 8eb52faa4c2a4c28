// keygate console: small enhancements. Every page works without this file: forms post, the
// filter form searches on the server, the token can be selected and copied by hand.
'use strict';

function copyButtons() {
  for (const button of document.querySelectorAll('button[data-copy]')) {
    const input = document.getElementById(button.dataset.copy);
    const status = document.getElementById('copy-status');
    button.hidden = false;
    button.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(input.value);
        status.textContent = 'Copied to the clipboard.';
      } catch {
        input.focus();
        input.select();
        status.textContent = 'Copying is not allowed here: the token is selected, press Ctrl+C.';
      }
    });
  }
  for (const input of document.querySelectorAll('input.token')) {
    input.addEventListener('focus', () => input.select());
  }
}

// Filters the rows as you type; the same rules as the server's filter.
function liveFilter() {
  const q = document.getElementById('q');
  const state = document.getElementById('state');
  const count = document.getElementById('count');
  const rows = [...document.querySelectorAll('tr[data-search]')];
  if (!q || !state || !count || rows.length === 0) return;
  const apply = () => {
    const words = q.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const row of rows) {
      const ok = (!state.value || row.dataset.state === state.value) &&
        words.every((w) => row.dataset.search.includes(w));
      row.hidden = !ok;
      if (ok) shown += 1;
    }
    count.textContent = `${shown} of ${rows.length} keys`;
  };
  q.addEventListener('input', apply);
  state.addEventListener('change', apply);
}

// A second click while a form is on its way would create a second key.
function singleSubmit() {
  for (const form of document.querySelectorAll('form[method="post"]')) {
    form.addEventListener('submit', () => {
      setTimeout(() => {
        for (const b of form.querySelectorAll('button[type="submit"]')) b.disabled = true;
      }, 0);
    });
  }
}

document.addEventListener('DOMContentLoaded', () => {
  copyButtons();
  liveFilter();
  singleSubmit();
});
