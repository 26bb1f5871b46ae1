function tf = is_field_name(k)
%IS_FIELD_NAME True when K is a valid struct field name in both MATLAB and Octave: a
%   letter, then letters, digits or _, at most namelengthmax characters, not a keyword.
%   (Octave also accepts a leading _, MATLAB does not; scistack uses the common rule.)
tf = ischar(k) && ~isempty(k) && size(k, 1) == 1 && numel(k) <= namelengthmax && ...
    isletter(k(1)) && all(isletter(k) | (k >= '0' & k <= '9') | k == '_') && ...
    all(k < 128) && ~iskeyword(k);
end
