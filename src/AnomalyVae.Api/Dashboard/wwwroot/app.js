// AnomalyVae dashboard: plain JavaScript over the /api endpoints, charts by Chart.js (served from /dashboard/vendor).
(() => {
  'use strict';
  const $ = (sel) => document.querySelector(sel);
  const state = { next: null, nextIncidents: null, incident: null, selected: null, detectors: [], charts: {} };
  const palette = ['#3b5bdb', '#e8590c', '#2f9e44', '#ae3ec9', '#1098ad', '#f08c00'];

  // Reads may require a key (Api:RequireKeyForReads); the key the user typed is kept in this browser only.
  async function api(path) {
    const headers = {};
    const key = localStorage.getItem('anomalyvae.apiKey');
    if (key) headers['X-Api-Key'] = key;
    const response = await fetch(path, { headers });
    if (response.status === 401) {
      const entered = prompt('This API needs an API key (X-Api-Key):');
      if (entered) { localStorage.setItem('anomalyvae.apiKey', entered); return api(path); }
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || body.title || response.statusText);
    return body;
  }

  const fmtTime = (iso) => iso ? iso.replace('T', ' ').replace(/\.\d+/, '').replace(/(\+00:00|Z)$/, '') : '–';
  const fmt = (x, digits = 2) => (x === null || x === undefined) ? '–' : Number(x).toFixed(digits);
  const text = (tag, value, cls) => { const el = document.createElement(tag); el.textContent = value; if (cls) el.className = cls; return el; };
  const showError = (e) => { $('#status').textContent = String(e.message || e); };

  function filters() {
    const params = new URLSearchParams();
    const detector = $('#detector-filter').value;
    const entity = $('#entity-filter').value.trim();
    const since = $('#since-filter').value;
    const minScore = $('#min-score-filter').value;
    if (detector) params.set('detector', detector);
    if (entity) params.set('entity', entity);
    if (since) params.set('from', new Date(Date.now() - Number(since) * 1000).toISOString());
    if (minScore !== '') params.set('minScore', minScore);
    return params;
  }

  async function loadDetectors() {
    const { items } = await api('/api/detectors');
    state.detectors = items;
    const select = $('#detector-filter');
    const current = select.value;
    select.replaceChildren(text('option', 'all'));
    select.firstChild.value = '';
    for (const d of items) select.append(Object.assign(text('option', d.detector), { value: d.detector }));
    select.value = current;
    const box = $('#detectors');
    box.replaceChildren();
    if (items.length === 0) box.append(text('div', 'No detectors yet.', 'empty'));
    for (const d of items) {
      const card = document.createElement('div');
      card.className = 'detector';
      card.dataset.detector = d.detector;
      card.append(text('b', d.detector));
      // Drift: PSI of the recent score bins against the calibration ("unknown" until enough events were scored).
      const drift = text('span', d.drift_status + (d.drift_psi === null ? '' : ` · PSI ${d.drift_psi.toFixed(3)}`), `badge drift-${d.drift_status}`);
      drift.dataset.drift = d.drift_status;
      drift.title = `${d.drift_events} events scored in the drift window`;
      const rows = [
        ['model', d.active_model_version || '–'],
        ['threshold', fmt(d.threshold)],
        ['flag rate (1 h)', d.flag_rate_last_hour === null ? '–' : (100 * d.flag_rate_last_hour).toFixed(2) + ' %'],
        ['anomalies (1 h)', String(d.anomalies_last_hour)],
        ['drift', drift],
      ];
      for (const [k, v] of rows) {
        const row = document.createElement('div');
        row.className = 'row';
        row.append(text('span', k), typeof v === 'string' ? text('span', v) : v);
        card.append(row);
      }
      box.append(card);
    }
  }

  // Incidents first: one row per run of anomalies of an entity; selecting one narrows the anomaly list to it.
  async function loadIncidents(append) {
    const params = filters();
    params.delete('minScore');
    params.set('limit', '20');
    if (append && state.nextIncidents) params.set('after', state.nextIncidents);
    const page = await api('/api/incidents?' + params);
    state.nextIncidents = page.next;
    const body = $('#incident-table tbody');
    if (!append) body.replaceChildren();
    for (const i of page.items) {
      const tr = document.createElement('tr');
      tr.dataset.id = i.id;
      tr.dataset.count = i.anomaly_count;
      const status = document.createElement('td');
      status.append(text('span', i.status, `badge incident-${i.status}`));
      tr.append(status, text('td', i.detector), text('td', i.entity), text('td', fmtTime(i.first_at)), text('td', fmtTime(i.last_at)),
        text('td', String(i.anomaly_count), 'num'), text('td', fmt(i.peak_score), 'num'),
        text('td', i.top_features.map((c) => c.feature).join(' · '), 'features'));
      tr.classList.toggle('selected', state.incident === i.id);
      tr.addEventListener('click', () => selectIncident(i));
      body.append(tr);
    }
    if (!append && page.items.length === 0) {
      const tr = document.createElement('tr');
      const td = text('td', 'No incidents match these filters.', 'empty');
      td.colSpan = 8;
      tr.append(td);
      body.append(tr);
    }
    $('#more-incidents').hidden = !state.nextIncidents;
  }

  async function selectIncident(incident) {
    state.incident = incident ? incident.id : null;
    for (const tr of document.querySelectorAll('#incident-table tbody tr')) tr.classList.toggle('selected', tr.dataset.id === String(state.incident));
    $('#incident-scope').textContent = incident ? `— incident #${incident.id} (${incident.entity}, ${incident.anomaly_count} anomalies)` : '';
    $('#clear-incident').hidden = !incident;
    await loadAnomalies(false);
    // Lets tests see which incident the anomaly list shows.
    document.body.dataset.incident = state.incident === null ? '' : String(state.incident);
  }

  async function loadAnomalies(append) {
    const params = filters();
    params.set('limit', '50');
    // An incident's anomalies are all of them, whatever the time filter says.
    if (state.incident !== null) { params.delete('from'); params.set('incident', String(state.incident)); }
    if (append && state.next) params.set('after', state.next);
    const page = await api('/api/anomalies?' + params);
    state.next = page.next;
    const body = $('#anomaly-table tbody');
    if (!append) body.replaceChildren();
    for (const a of page.items) {
      const tr = document.createElement('tr');
      tr.dataset.id = a.id;
      tr.append(text('td', fmtTime(a.detected_at)), text('td', a.detector), text('td', a.entity ?? '–'),
        text('td', fmt(a.score), 'num'), text('td', a.top_features.map((c) => `${c.feature} ${fmt(c.score, 1)}`).join(' · '), 'features'));
      tr.addEventListener('click', () => showAnomaly(a.id));
      body.append(tr);
    }
    if (!append && page.items.length === 0) {
      const tr = document.createElement('tr');
      const td = text('td', 'No anomalies match these filters.', 'empty');
      td.colSpan = 5;
      tr.append(td);
      body.append(tr);
    }
    $('#more').hidden = !state.next;
  }

  // Scores of the flagged events over time with the detector's threshold: how far above the line they land.
  async function loadTimeline() {
    const detector = $('#detector-filter').value || (state.detectors[0] && state.detectors[0].detector);
    $('#timeline-detector').textContent = detector ? `— ${detector}` : '';
    if (!detector) return;
    const params = filters();
    params.set('detector', detector);
    params.set('limit', '1000');
    const page = await api('/api/anomalies?' + params);
    const points = page.items.map((a) => ({ x: Date.parse(a.detected_at), y: a.score, id: a.id })).reverse();
    const info = state.detectors.find((d) => d.detector === detector);
    const xs = points.map((p) => p.x);
    const datasets = [{ label: 'anomaly score', data: points, showLine: false, pointRadius: 3.5, pointHoverRadius: 6, backgroundColor: 'rgba(224,49,49,.75)', borderColor: '#e03131' }];
    if (info && info.threshold !== null && xs.length) {
      datasets.push({ label: `threshold ${fmt(info.threshold)}`, data: [{ x: Math.min(...xs), y: info.threshold }, { x: Math.max(...xs), y: info.threshold }],
        showLine: true, pointRadius: 0, borderDash: [6, 4], borderColor: '#495057', borderWidth: 1.5 });
    }
    $('#timeline-note').textContent = page.next ? 'Showing the newest 1000 anomalies.' : `${points.length} anomalies.`;
    draw('timeline', '#timeline-chart', {
      type: 'scatter',
      data: { datasets },
      options: {
        animation: false, maintainAspectRatio: false,
        scales: {
          x: { type: 'linear', ticks: { maxTicksLimit: 8, callback: (v) => new Date(v).toISOString().slice(5, 16).replace('T', ' ') } },
          y: { title: { display: true, text: 'score' } },
        },
        plugins: { legend: { position: 'bottom' } },
        onClick: (_, elements) => { const e = elements.find((x) => x.datasetIndex === 0); if (e) showAnomaly(points[e.index].id); },
      },
    });
  }

  async function showAnomaly(id) {
    const a = await api(`/api/anomalies/${encodeURIComponent(id)}`);
    state.selected = id;
    for (const tr of document.querySelectorAll('#anomaly-table tbody tr')) tr.classList.toggle('selected', tr.dataset.id === String(id));
    $('#detail').hidden = false;
    $('#detail-title').textContent = `#${a.id}`;
    const facts = $('#detail-facts');
    facts.replaceChildren();
    for (const [k, v] of [['detector', a.detector], ['entity', a.entity ?? '–'], ['detected', fmtTime(a.detected_at)], ['event time', fmtTime(a.event_time)],
      ['score', `${fmt(a.score)} (threshold ${fmt(a.threshold)})`], ['p-value', Number(a.p_value).toExponential(2)], ['model', a.model_version],
      ['source', `${a.topic}[${a.partition}] @ ${a.offset}`]]) {
      facts.append(text('dt', k), text('dd', v));
    }
    const contributions = a.contributions.slice(0, 12);
    draw('contributions', '#contributions-chart', {
      type: 'bar',
      data: {
        labels: contributions.map((c) => c.feature),
        datasets: [{ label: 'contribution to the score', data: contributions.map((c) => c.score),
          backgroundColor: contributions.map((_, i) => i === 0 ? '#e03131' : palette[0]), borderRadius: 4 }],
      },
      options: { indexAxis: 'y', animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true } } },
    });
    $('#detail-event').textContent = JSON.stringify(a.event, null, 2);
    const feedback = $('#detail-feedback');
    feedback.replaceChildren();
    if (a.feedback.length === 0) feedback.append(text('li', 'none yet', 'muted'));
    for (const f of a.feedback) feedback.append(text('li', `${f.label.replace('_', ' ')} — ${f.source}, ${fmtTime(f.created_at)}${f.note ? ': ' + f.note : ''}`));
    // Lets tests (and curious users) see which anomaly the chart shows.
    document.body.dataset.contributionsFor = String(a.id);
  }

  async function loadModels() {
    const { items } = await api('/api/models');
    const body = $('#models-table tbody');
    body.replaceChildren();
    if (items.length === 0) {
      const tr = document.createElement('tr'); const td = text('td', 'No models registered.', 'empty'); td.colSpan = 7; tr.append(td); body.append(tr);
    }
    for (const m of items) {
      const tr = document.createElement('tr');
      const status = document.createElement('td');
      status.append(text('span', m.status, `badge ${m.status}`));
      tr.append(text('td', m.detector), text('td', m.version), status, text('td', fmtTime(m.created_at)),
        text('td', fmt(m.threshold), 'num'), text('td', m.feature_count ?? '–', 'num'),
        text('td', m.window ? `${m.window.steps} events per ${m.window.entity_field}` : 'each event'));
      body.append(tr);
    }
  }

  function draw(name, selector, config) {
    if (typeof Chart === 'undefined') { showError('Chart library missing: run deploy/local/dashboard-assets.sh and rebuild.'); return; }
    if (state.charts[name]) state.charts[name].destroy();
    state.charts[name] = new Chart($(selector), config);
  }

  async function refresh() {
    $('#status').textContent = '';
    try {
      state.incident = null;
      $('#incident-scope').textContent = '';
      $('#clear-incident').hidden = true;
      await loadIncidents(false);
      await loadAnomalies(false);
      await loadTimeline();
    } catch (e) { showError(e); }
  }

  $('#filters').addEventListener('submit', (e) => { e.preventDefault(); refresh(); });
  $('#detector-filter').addEventListener('change', refresh);
  $('#more').addEventListener('click', () => loadAnomalies(true).catch(showError));
  $('#more-incidents').addEventListener('click', () => loadIncidents(true).catch(showError));
  $('#clear-incident').addEventListener('click', () => selectIncident(null).catch(showError));

  (async () => {
    try {
      await loadDetectors();
      // An alert's dashboard link (?detector=..&entity=..) opens the dashboard filtered to its incident's entity.
      const linked = new URLSearchParams(location.search);
      if (linked.get('detector')) $('#detector-filter').value = linked.get('detector');
      if (linked.get('entity')) $('#entity-filter').value = linked.get('entity');
      await Promise.all([refresh(), loadModels()]);
      document.body.dataset.ready = 'true';
    } catch (e) { showError(e); }
  })();
})();
