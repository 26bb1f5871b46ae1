classdef SavedValue < scistack.BaseVariable
end
