function n = count_all(signals)
%COUNT_ALL An aggregate: for_each over subjects passes every session's value in a cell.
if ~iscell(signals)
    error('test:notACell', 'expected a cell array, got a %s', class(signals));
end
n = numel(signals);
end
