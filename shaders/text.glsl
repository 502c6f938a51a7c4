#version 330 core
// HUD text and panels: coloured quads whose alpha comes from a glyph atlas (one channel).
// Panels use the atlas's solid cell, so one program and one draw call cover the whole HUD.

#ifdef VERTEX
uniform vec2 viewport;  // pixels
in vec2 in_pos;         // pixels, origin top-left
in vec2 in_uv;          // atlas coordinates
in vec4 in_color;
out vec2 uv;
out vec4 color;
void main() {
    uv = in_uv;
    color = in_color;
    vec2 ndc = vec2(in_pos.x / viewport.x * 2.0 - 1.0, 1.0 - in_pos.y / viewport.y * 2.0);
    gl_Position = vec4(ndc, 0.0, 1.0);
}
#endif

#ifdef FRAGMENT
uniform sampler2D atlas;
in vec2 uv;
in vec4 color;
out vec4 frag;
void main() {
    frag = vec4(color.rgb, color.a * texture(atlas, uv).r);
}
#endif
