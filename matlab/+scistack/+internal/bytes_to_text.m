function s = bytes_to_text(bytes)
%BYTES_TO_TEXT A char row from UTF-8 bytes: the bytes themselves in Octave (whose char is
%   8-bit and treated as UTF-8), decoded UTF-16 in MATLAB.
b = uint8(bytes(:)');
if all(b < 128) || scistack.internal.is_octave()
    s = char(b);
else
    s = native2unicode(b, 'UTF-8');
end
end
