function cp = char_to_cp(s)
%CHAR_TO_CP Unicode code points (double row) of a char row: Octave chars are UTF-8 bytes,
%   MATLAB chars are UTF-16 code units (surrogate pairs are combined).
u = double(s(:)');
if all(u < 128)
    cp = u;
elseif scistack.internal.is_octave()
    cp = scistack.internal.utf8_decode(uint8(u));
else
    hi = find(u >= 55296 & u < 56320);
    hi = hi(hi < numel(u));
    hi = hi(u(hi + 1) >= 56320 & u(hi + 1) < 57344);
    cp = u;
    cp(hi) = 65536 + (u(hi) - 55296) * 1024 + (u(hi + 1) - 56320);
    cp(hi + 1) = [];
end
end
