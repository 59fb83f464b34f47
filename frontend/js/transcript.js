// The recording page's transcript (admin): loaded only when asked (each load is logged
// in the recordings' access log), each line a button that plays the recording from there.
function clock(seconds) {
  const whole = Math.floor(seconds);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

async function show(panel) {
  const list = panel.querySelector(".cb-transcript-lines");
  const response = await fetch(panel.dataset.url, {credentials: "same-origin"});
  if (!response.ok) {
    list.textContent = interpolate(
      gettext("The transcript could not be loaded (%s)."), [response.status]);
    return;
  }
  const {utterances} = await response.json();
  const player = document.querySelector("audio");
  list.replaceChildren(...utterances.map((line) => {
    const item = document.createElement("li");
    const seek = document.createElement("button");
    seek.type = "button";
    seek.className = "cb-transcript-line";
    seek.dataset.start = String(line.startS);
    seek.style.cssText = "border:0;background:none;text-align:left;cursor:pointer;padding:2px 0";
    seek.textContent = `[${clock(line.startS)}] ${line.party}: ${line.text}`;
    seek.addEventListener("click", () => {
      if (!player) return;
      player.currentTime = line.startS;
      player.play().catch(() => {});
    });
    item.append(seek);
    return item;
  }));
  if (!utterances.length) list.textContent = gettext("Nothing was said (no speech found).");
}

for (const panel of document.querySelectorAll(".cb-transcript")) {
  const button = panel.querySelector("button");
  button.addEventListener("click", () => {
    button.disabled = true;
    show(panel).finally(() => { button.remove(); });
  });
}
