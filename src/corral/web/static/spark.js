// A sparkline: a series drawn as one SVG polyline over its own range, the last value beside.

const NS = "http://www.w3.org/2000/svg";

export function sparkline(values, { width = 260, height = 48, label, format, className }) {
  const box = document.createElement("figure");
  box.className = `spark ${className || ""}`;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const kept = values.filter((v) => v !== null && v !== undefined);
  if (kept.length >= 2) {
    const top = Math.max(...kept), bottom = Math.min(0, ...kept);
    const span = top - bottom || 1;
    const step = width / (values.length - 1);
    const points = [];
    values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      points.push(`${(i * step).toFixed(1)},${(height - 3 - ((v - bottom) / span) * (height - 6)).toFixed(1)}`);
    });
    const area = document.createElementNS(NS, "polygon");
    const first = points[0].split(",")[0], last = points[points.length - 1].split(",")[0];
    area.setAttribute("points", `${first},${height} ${points.join(" ")} ${last},${height}`);
    area.setAttribute("class", "area");
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("class", "line");
    svg.append(area, line);
  }
  const caption = document.createElement("figcaption");
  const now = kept.length ? format(kept[kept.length - 1]) : "no samples yet";
  const peak = kept.length ? ` (peak ${format(Math.max(...kept))})` : "";
  caption.textContent = `${label}: ${now}${peak}`;
  box.append(caption, svg);
  box.dataset.samples = String(kept.length);
  return box;
}
