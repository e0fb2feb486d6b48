// The student booking page: plain JavaScript against the /v1 API, authorised by the page link.
"use strict";
(function () {
  const body = document.body;
  const token = body.dataset.token;
  const studentId = body.dataset.student;
  const $ = (id) => document.getElementById(id);
  const state = { services: [], rescheduling: null };

  async function api(path, options = {}) {
    const headers = Object.assign({ Authorization: "Bearer " + token }, options.headers || {});
    if (options.body) headers["Content-Type"] = "application/json";
    const response = await fetch(path, Object.assign({}, options, { headers }));
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.message || "Request failed (" + response.status + ")");
    return data;
  }

  function say(text, html) {
    const box = $("status");
    box.textContent = text;
    if (html) box.appendChild(html);
  }

  function zone() { return $("zone").value; }

  function formatTime(iso, options) {
    return new Intl.DateTimeFormat(undefined, Object.assign({ timeZone: zone() }, options)).format(new Date(iso));
  }

  function fillZones() {
    const detected = Intl.DateTimeFormat().resolvedOptions().timeZone || body.dataset.zone;
    const zones = Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : [detected];
    if (!zones.includes(detected)) zones.unshift(detected);
    for (const name of zones) $("zone").add(new Option(name, name, false, name === detected));
  }

  function service() { return state.services.find((s) => s.slug === $("service").value); }

  function fillMentors() {
    const select = $("mentor");
    select.length = 1;
    for (const mentor of (service() || { mentors: [] }).mentors) select.add(new Option(mentor.name, mentor.id));
  }

  async function loadQuota() {
    const rows = await api("/v1/students/" + encodeURIComponent(studentId) + "/quota");
    const row = rows.find((r) => r.service === $("service").value) || rows[0];
    if (!row) { $("quota").textContent = "You have no sessions yet."; return; }
    const left = row.unlimited ? "Unlimited sessions" : row.remaining + " session" + (row.remaining === 1 ? "" : "s") + " left";
    $("quota").textContent = left + (row.next_renewal ? ", renews on " + row.next_renewal : "") + ".";
  }

  async function loadSlots() {
    const params = new URLSearchParams({ tz: zone(), days: "14" });
    if ($("mentor").value) params.set("mentor", $("mentor").value);
    const slots = await api("/v1/services/" + encodeURIComponent($("service").value) + "/slots?" + params);
    const box = $("slots");
    box.replaceChildren();
    if (!slots.length) { box.textContent = "No free times in the next two weeks."; return; }
    let day = null, list = null;
    for (const slot of slots) {
      const label = formatTime(slot.start, { weekday: "long", day: "numeric", month: "long" });
      if (label !== day) {
        day = label;
        const group = document.createElement("div");
        group.className = "day";
        const heading = document.createElement("h3");
        heading.textContent = label;
        list = document.createElement("div");
        group.append(heading, list);
        box.appendChild(group);
      }
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = formatTime(slot.start, { hour: "2-digit", minute: "2-digit" });
      button.setAttribute("aria-label", (state.rescheduling ? "Move to " : "Book ") + label + " " + button.textContent);
      button.addEventListener("click", () => choose(slot));
      list.appendChild(button);
    }
  }

  function icsLink(booking) {
    const link = document.createElement("a");
    link.href = "/s/" + token + "/bookings/" + booking.id + ".ics";
    link.textContent = "Add to calendar (.ics)";
    link.setAttribute("download", "");
    return link;
  }

  async function choose(slot) {
    try {
      const mentor = $("mentor").value || slot.mentors[0];
      let booking;
      if (state.rescheduling) {
        booking = await api("/v1/bookings/" + state.rescheduling + "/reschedule", {
          method: "POST", body: JSON.stringify({ start: slot.start }) });
        state.rescheduling = null;
        $("mode").hidden = true;
      } else {
        booking = await api("/v1/bookings", {
          method: "POST",
          headers: { "Idempotency-Key": crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random() },
          body: JSON.stringify({ service: $("service").value, mentor, student: studentId, start: slot.start }) });
      }
      say("Booked: " + formatTime(booking.start, { dateStyle: "full", timeStyle: "short" }) + ". ", icsLink(booking));
    } catch (error) {
      say("Could not book: " + error.message);
    }
    await refresh();
  }

  function refundRule(booking) {
    const svc = state.services.find((s) => s.slug === booking.service) || { cancel_refund_hours: 24 };
    const hours = (new Date(booking.start) - Date.now()) / 3600000;
    const refunded = hours >= svc.cancel_refund_hours;
    return "Cancelling at least " + svc.cancel_refund_hours + " hours before the start gives the session back. " +
      (refunded ? "This session will be given back." : "It is too late: this session will not be given back.");
  }

  function confirmCancel(item, booking) {
    const panel = document.createElement("p");
    panel.textContent = refundRule(booking) + " ";
    const yes = button("Confirm cancel", "danger", async () => {
      try {
        const result = await api("/v1/bookings/" + booking.id + "/cancel", { method: "POST", body: JSON.stringify({ by: "student" }) });
        say("Cancelled" + (result.refunded ? "; the session was given back." : "; the session was not given back."));
      } catch (error) { say("Could not cancel: " + error.message); }
      await refresh();
    });
    const no = button("Keep it", "secondary", () => panel.remove());
    panel.append(yes, no);
    item.appendChild(panel);
    yes.focus();
  }

  function button(text, kind, handler) {
    const element = document.createElement("button");
    element.type = "button";
    element.textContent = text;
    if (kind) element.className = kind;
    element.addEventListener("click", handler);
    return element;
  }

  async function loadBookings() {
    const rows = await api("/v1/bookings?upcoming=true");
    const list = $("bookings");
    list.replaceChildren();
    if (!rows.length) { list.textContent = "None yet."; return; }
    for (const booking of rows) {
      const item = document.createElement("li");
      const svc = state.services.find((s) => s.slug === booking.service);
      const title = document.createElement("p");
      title.textContent = formatTime(booking.start, { dateStyle: "full", timeStyle: "short" }) + " – " + (svc ? svc.name : booking.service);
      item.append(title, icsLink(booking), document.createElement("br"),
        button("Reschedule", "secondary", () => startReschedule(booking)),
        button("Cancel", "danger", () => confirmCancel(item, booking)));
      list.appendChild(item);
    }
  }

  function startReschedule(booking) {
    state.rescheduling = booking.id;
    $("mode").hidden = false;
    $("mode").textContent = "Choose a new time below. " + refundRule(booking).split(". ")[0] + ".";
    loadSlots();
    $("slots").scrollIntoView();
  }

  async function refresh() {
    await Promise.all([loadQuota(), loadSlots(), loadBookings()]).catch((error) => say(error.message));
  }

  async function start() {
    fillZones();
    state.services = await api("/v1/services");
    for (const svc of state.services) $("service").add(new Option(svc.name, svc.slug));
    fillMentors();
    $("service").addEventListener("change", () => { fillMentors(); refresh(); });
    $("mentor").addEventListener("change", loadSlots);
    $("zone").addEventListener("change", () => { loadSlots(); loadBookings(); });
    await refresh();
  }

  start().catch((error) => say(error.message));
})();
